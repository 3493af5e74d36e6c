"""execmem with the ROX cache (mm/execmem.c, 6.13 reworked for 6.15) — not in v5.11; a later design.

Executable allocations (module text, BPF packs, ftrace and kprobe pages) are
carved, a page at a time, out of 2 MiB chunks.  A chunk is one order-9 block
mapped in module space with a single PMD and made read-only+executable as a
whole (``set_memory_rox``): its direct-map alias turns read-only in one piece,
which CPA's whole-large-page rule does without a split.  Freeing returns pages
to the chunk — no permission change, no flush.  When no order-9 block can be
had the 2025 fallback applies: ordinary 4K pages made ROX one by one (splits).

Assumptions, said so in the notebook: BPF packs come from this cache too (UNVERIFIED
for x86 in every release), the direct-map alias is only made read-only (never
executable), chunks are never given back, and modules' other sections are
ordinary allocations made RO as in v5.11.
"""

from ..arch.x86 import set_memory as _cpa
from ..arch.x86.module import MODULES_END, MODULES_VADDR, get_module_load_offset, module_memfree
from ..arch.x86.pgtable_types import PAGE_KERNEL
from . import page_alloc as _pa
from . import vmalloc as _vm
from .gfp import __GFP_NORETRY, __GFP_NOWARN, GFP_KERNEL
from .page import PAGE_SHIFT, PAGE_SIZE, PAGES_PER_2M

CHUNK_PAGES = PAGES_PER_2M
EXECMEM_FALLBACK_CALLER = "execmem_alloc (4K fallback)"


class execmem_chunk:
    """One 2 MiB ROX chunk: its vm_struct and which of its 512 pages are handed out."""

    def __init__(self, area):
        self.area = area
        self.used = bytearray(CHUNK_PAGES)


def execmem_cache_populate(k):
    """execmem_cache_populate(): one huge (order-9, PMD-mapped) area, set_memory_rox'd whole."""
    block = _pa.alloc_pages(k, GFP_KERNEL | __GFP_NOWARN | __GFP_NORETRY, 9)
    if block is None:
        k.stat["execmem_populate_fail"] += 1
        return None
    _pa.split_page(k, block, 9)
    area = _vm.__get_vm_area_node(k, CHUNK_PAGES << PAGE_SHIFT, CHUNK_PAGES << PAGE_SHIFT,
                                  _vm.VM_ALLOC | _vm.VM_NO_GUARD,
                                  MODULES_VADDR + get_module_load_offset(k), MODULES_END,
                                  -1, GFP_KERNEL, "execmem_cache_populate")
    if area is None:
        _pa.__free_pages(k, block, 0)
        for pfn in range(block.pfn + 1, block.pfn + CHUNK_PAGES):
            _pa.__free_pages(k, k.pages.pfn_to_page(pfn), 0)
        return None
    area.pages = [k.pages.pfn_to_page(block.pfn + i) for i in range(CHUNK_PAGES)]
    for page in area.pages:
        page.owner = "vmalloc"
    area.nr_pages = CHUNK_PAGES
    area.prot = [int(PAGE_KERNEL)] * CHUNK_PAGES
    area.huge = True
    k.vmap.nr_vmalloc_pages += CHUNK_PAGES
    _cpa.set_memory_rox(k, area.addr, CHUNK_PAGES)
    chunk = execmem_chunk(area)
    k.execmem_cache.append(chunk)
    k.stat["execmem_chunks"] += 1
    return chunk


def execmem_alloc(k, size, caller="execmem_alloc"):
    """execmem_alloc() for a ROX-cached type: page-rounded pages from a chunk."""
    pages = -(-size // PAGE_SIZE)
    if pages > CHUNK_PAGES:
        return _fallback(k, pages, caller)
    want = bytes(pages)
    for chunk in k.execmem_cache:
        pos = chunk.used.find(want)
        if pos >= 0:
            break
    else:
        chunk = execmem_cache_populate(k)
        if chunk is None:
            return _fallback(k, pages, caller)
        pos = 0
    chunk.used[pos:pos + pages] = b"\x01" * pages
    return chunk.area.addr + (pos << PAGE_SHIFT)


def _fallback(k, pages, caller):
    addr = _vm.__vmalloc_node_range(k, pages << PAGE_SHIFT, PAGE_SIZE,
                                    MODULES_VADDR + get_module_load_offset(k), MODULES_END,
                                    GFP_KERNEL, PAGE_KERNEL, _vm.VM_FLUSH_RESET_PERMS, -1,
                                    EXECMEM_FALLBACK_CALLER)
    if addr is not None:
        _cpa.set_memory_rox(k, addr, pages)
        k.stat["execmem_fallback"] += 1
    return addr


def free_exec(k, addr, size):
    """A caller's free: module_memfree() in v5.11, execmem_free() in the later design."""
    if "execmem_rox" in k.features:
        execmem_free(k, addr, size)
    else:
        module_memfree(k, addr)


def execmem_free(k, addr, size):
    """execmem_free(): pages go back to their chunk (refilled with traps, no CPA)."""
    pages = -(-size // PAGE_SIZE)
    for chunk in k.execmem_cache:
        base = chunk.area.addr
        if base <= addr < base + (CHUNK_PAGES << PAGE_SHIFT):
            pos = (addr - base) >> PAGE_SHIFT
            chunk.used[pos:pos + pages] = bytes(pages)
            return
    _vm.vfree(k, addr)
