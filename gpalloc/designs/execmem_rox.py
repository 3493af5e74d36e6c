"""execmem with the ROX cache (mm/execmem.c, 6.13; x86 module text 6.15) — a later design.

Not in v5.11.  Executable allocations (module text, BPF packs, ftrace and kprobe
pages) are carved, a page at a time, out of 2 MiB chunks.  A chunk is one
order-9 block mapped in module space with a single PMD and made
read-only+executable as a whole (``set_memory_rox``): its direct-map alias turns
read-only in one piece, which CPA's whole-large-page rule does without a split.
Freeing returns pages to the chunk — no permission change, no flush.  When no
order-9 block can be had the 2025 fallback applies: ordinary 4K pages made ROX
one by one (splits).  CPA here is the 6.2+ one: the direct-map alias is never
made executable (cpa_process_alias() leaves _PAGE_NX alone).

Assumptions, said so in the notebook: BPF packs come from this cache too
(UNVERIFIED for x86 in every release), chunks are never given back, and modules'
other sections are ordinary allocations made RO as in v5.11.  bpf_prog_pack
(5.18) is part of this kernel too.
"""

from ..arch.x86 import set_memory as _cpa
from ..arch.x86.module import MODULES_END, MODULES_VADDR, get_module_load_offset
from ..arch.x86.pgtable_types import _PAGE_NX, PAGE_KERNEL
from ..check import fail
from ..mm import page_alloc as _pa
from ..mm import vmalloc as _vm
from ..mm.execmem import EXECMEM_MODULE_DATA
from ..mm.gfp import __GFP_NORETRY, __GFP_NOWARN, GFP_KERNEL
from ..mm.mmzone import NUMA_NO_NODE
from ..mm.page import PAGE_SHIFT, PAGES_PER_2M, PFN_UP
from .prog_pack import ProgPack

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
                                  NUMA_NO_NODE, GFP_KERNEL, "execmem_cache_populate")
    if area is None:
        for pfn in range(block.pfn, block.pfn + CHUNK_PAGES):
            _pa.__free_pages(k, k.pages.pfn_to_page(pfn), 0)
        return None
    _vm.vmap_huge_pages(k, area, [k.pages.pfn_to_page(block.pfn + i) for i in range(CHUNK_PAGES)],
                      PAGE_KERNEL)
    _cpa.set_memory_rox(k, area.addr, CHUNK_PAGES)
    chunk = execmem_chunk(area)
    k.design.cache.append(chunk)
    k.stat["execmem_chunks"] += 1
    return chunk


def execmem_cache_alloc(k, size):
    """execmem_cache_alloc(): page-rounded pages from a chunk (a new chunk if none fits)."""
    pages = PFN_UP(size)
    if pages > CHUNK_PAGES:
        return _fallback(k, pages)
    want = bytes(pages)
    for chunk in k.design.cache:
        pos = chunk.used.find(want)
        if pos >= 0:
            break
    else:
        chunk = execmem_cache_populate(k)
        if chunk is None:
            return _fallback(k, pages)
        pos = 0
    chunk.used[pos:pos + pages] = b"\x01" * pages
    return chunk.area.addr + (pos << PAGE_SHIFT)


def _fallback(k, pages):
    """No 2 MiB block (or a request past a chunk): 4K pages made ROX one by one."""
    addr = _vm.__vmalloc_node_range(k, pages << PAGE_SHIFT, 1 << PAGE_SHIFT,
                                    MODULES_VADDR + get_module_load_offset(k), MODULES_END,
                                    GFP_KERNEL, PAGE_KERNEL, _vm.VM_FLUSH_RESET_PERMS,
                                    NUMA_NO_NODE, EXECMEM_FALLBACK_CALLER)
    if addr is not None:
        _cpa.set_memory_rox(k, addr, pages)
        k.stat["execmem_fallback"] += 1
    return addr


def execmem_cache_free(k, addr, size):
    """execmem_cache_free(): pages go back to their chunk (refilled with traps, no CPA)."""
    pages = PFN_UP(size)
    for chunk in k.design.cache:
        base = chunk.area.addr
        if base <= addr < base + (CHUNK_PAGES << PAGE_SHIFT):
            pos = (addr - base) >> PAGE_SHIFT
            chunk.used[pos:pos + pages] = bytes(pages)
            return
    _vm.vfree(k, addr)


class ExecmemRox(ProgPack):
    """5.18's packs plus the 6.15 x86 ROX cache for every executable type but module data."""

    name = "execmem-rox"
    summary = "6.15 execmem ROX cache (Mike Rapoport): code in PMD-mapped read-only+exec chunks"

    def __init__(self, **options):
        super().__init__(**options)
        self.cache = []

    def execmem_is_rox(self, type):
        """Module text, BPF, ftrace and kprobes come from the ROX cache; module data does not."""
        return type != EXECMEM_MODULE_DATA

    def execmem_alloc(self, k, type, size, caller):
        """execmem_alloc(): ROX types from the cache, the rest as module_alloc()."""
        if self.execmem_is_rox(type):
            return execmem_cache_alloc(k, size)
        return super().execmem_alloc(k, type, size, caller)

    def execmem_free(self, k, type, addr, size):
        """execmem_free(): ROX types back to their chunk, the rest vfree()."""
        if self.execmem_is_rox(type):
            execmem_cache_free(k, addr, size)
        else:
            super().execmem_free(k, type, addr, size)

    def cpa_alias_masks(self, set_, clr):
        """6.2+ cpa_process_alias(): the direct map stays NX whatever the request."""
        return set_ & ~_PAGE_NX, clr & ~_PAGE_NX

    def pools(self, k):
        """One row per ROX chunk: 2 MiB held, the pages handed out (packs live inside)."""
        return [{"kind": "execmem_cache", "addr": c.area.addr,
                 "pool_bytes": CHUNK_PAGES << PAGE_SHIFT, "in_use_bytes": sum(c.used) << PAGE_SHIFT}
                for c in self.cache]

    def check(self, k):
        """Packs as ProgPack; every chunk is a live 512-page huge area."""
        super().check(k)
        for c in self.cache:
            if _vm.find_vm_area(k, c.area.addr) is not c.area or c.area.nr_pages != CHUNK_PAGES:
                fail("execmem chunk mapped", f"{c.area!r}")
