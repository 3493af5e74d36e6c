"""execmem_alloc(type, size): the one seam every executable-memory caller goes through.

Upstream introduced it in 6.10 (mm/execmem.c, include/linux/execmem.h) so that
module text, BPF, ftrace and kprobes stop calling module_alloc() directly and an
architecture can put each *type* where it wants.  The model uses the same seam
for every kernel it runs: in v5.11 (and the RFC) each type is simply
module_alloc(); later designs (gpalloc.designs) decide differently.  Callers ask
:func:`execmem_is_rox` whether memory arrives already read-only+executable; those
that write code into it take it with :func:`execmem_alloc_rw` and give it back to
ROX with :func:`execmem_restore_rox`, as upstream callers do.

BPF trampolines and dispatchers allocate through bpf_jit_alloc_exec(), i.e.
EXECMEM_BPF, as upstream does.

**The ROX cache** (mm/execmem.c, 6.13; x86-64 6.15 for module text, 6.17 also ftrace and
kprobes — never BPF on x86; docs/reference/kernel-6.18-bpf-jit.md §5.3): types the
design lists in ``execmem_rox_types`` are carved, page-rounded, first fit by address,
out of chunks of module space.  A chunk is populated as a huge vmalloc of 2 MiB
(VM_ALLOW_HUGE_VMAP: one order-9 block, PMD-mapped; if that fails __vmalloc_node_range()
retries the same size with order-0 pages and 4K PTEs), filled with traps and made ROX
with one set_memory_rox(): a PMD-mapped chunk keeps its 2 MiB direct-map entry (only a
1 GiB entry around it splits), a 4K-page chunk splits every region it touches.  6.17+
(``execmem_populate_exact``) retries a failed 2 MiB populate with the requested size.
Writing code in needs the piece RW: ``execmem_force_rw`` (set_memory_nx +
set_memory_rw), which splits the chunk's 2 MiB direct-map region the first time.
Freeing: 6.13–6.16 overwrite the piece with traps by text poking (no permission
change); 6.17+ (``execmem_free_rw``) make it RW, fill it and restore ROX.  Then
execmem_cache_clean() gives back every chunk that is wholly free: its direct map made
valid (PRESENT|RW) again and vfree().  Chunk areas carry no VM_FLUSH_RESET_PERMS.

Simplified: one chunk per populate (requests above 2 MiB populate a chunk of their
rounded size), free ranges never merge across chunks (each chunk has its guard page),
and the clean runs at once rather than from a work item.
"""

from enum import IntEnum

from ..arch.x86 import set_memory as _cpa
from ..arch.x86.module import MODULES_END, MODULES_VADDR, get_module_load_offset
from ..arch.x86.pgtable_types import PAGE_KERNEL
from ..check import fail
from ..errno import ENOMEM
from . import page_alloc as _pa
from . import vmalloc as _vm
from .gfp import __GFP_NOWARN, GFP_KERNEL
from .mmzone import NUMA_NO_NODE
from .page import PAGE_SHIFT, PAGE_SIZE, PAGES_PER_2M, PFN_UP

PMD_SIZE = PAGES_PER_2M << PAGE_SHIFT


class execmem_type(IntEnum):
    """enum execmem_type (include/linux/execmem.h, 6.10+)."""

    EXECMEM_DEFAULT = 0
    EXECMEM_MODULE_TEXT = 0
    EXECMEM_KPROBES = 1
    EXECMEM_FTRACE = 2
    EXECMEM_BPF = 3
    EXECMEM_MODULE_DATA = 4


EXECMEM_DEFAULT = execmem_type.EXECMEM_DEFAULT
EXECMEM_MODULE_TEXT = execmem_type.EXECMEM_MODULE_TEXT
EXECMEM_KPROBES = execmem_type.EXECMEM_KPROBES
EXECMEM_FTRACE = execmem_type.EXECMEM_FTRACE
EXECMEM_BPF = execmem_type.EXECMEM_BPF
EXECMEM_MODULE_DATA = execmem_type.EXECMEM_MODULE_DATA


def execmem_alloc(k, type, size, caller):
    """execmem_alloc(type, size): memory for code of this type, from the running design."""
    return k.design.execmem_alloc(k, type, size, caller)


def execmem_free(k, type, addr, size):
    """execmem_free(addr): give executable memory back the way the design got it."""
    k.design.execmem_free(k, type, addr, size)


def execmem_is_rox(k, type):
    """execmem_is_rox(type): does memory of this type arrive read-only and executable?"""
    return k.design.execmem_is_rox(type)


def execmem_force_rw(k, addr, size):
    """execmem_force_rw() (6.15 execmem_make_temp_rw()): NX, then RW, on the piece and alias."""
    pages = PFN_UP(size)
    _cpa.set_memory_nx(k, addr, pages)
    return _cpa.set_memory_rw(k, addr, pages)


def execmem_alloc_rw(k, type, size, caller):
    """execmem_alloc_rw(): execmem_alloc(), made writable first if it arrived ROX."""
    addr = execmem_alloc(k, type, size, caller)
    if addr is not None and execmem_is_rox(k, type):
        execmem_force_rw(k, addr, size)
    return addr


def execmem_restore_rox(k, type, addr, size):
    """execmem_restore_rox(): back to ROX once the code is written (ROX types only)."""
    if execmem_is_rox(k, type):
        _cpa.set_memory_rox(k, addr, PFN_UP(size))


# ---------------------------------------------------------------- the ROX cache

class execmem_cache:
    """struct execmem_cache: the chunks (vm areas), their free ranges by address, busy pieces."""

    def __init__(self):
        self.chunks = []    # vm_structs, in populate order
        self.free = {}      # chunk address → sorted list of free [start, end) ranges
        self.busy = {}      # piece address → (chunk address, bytes)


def execmem_vmalloc_huge(k, size, caller):
    """execmem_vmalloc(VM_ALLOW_HUGE_VMAP): order-9 blocks PMD-mapped, else 4K pages.

    __vmalloc_node_range() with a huge shift: one order-9 block per 2 MiB (split_page()d),
    a PMD-aligned area; if a block cannot be had, everything goes back and the same
    size is tried again with PAGE_SHIFT (order-0 pages, 4K PTEs, PAGE_SIZE alignment).
    """
    start = MODULES_VADDR + get_module_load_offset(k)
    gfp = GFP_KERNEL | __GFP_NOWARN
    if size >= PMD_SIZE and not size % PMD_SIZE:
        area = _vm.__get_vm_area_node(k, size, PMD_SIZE, _vm.VM_ALLOC, start, MODULES_END,
                                      NUMA_NO_NODE, gfp, caller)
        blocks = []
        while area is not None and len(blocks) < size // PMD_SIZE:
            block = _pa.alloc_pages(k, gfp, 9)
            if block is None:
                break
            _pa.split_page(k, block, 9)
            blocks.append(block)
        if area is not None and len(blocks) == size // PMD_SIZE:
            _vm.vmap_huge_pages(k, area, [k.pages.pfn_to_page(b.pfn + i) for b in blocks
                                          for i in range(PAGES_PER_2M)], PAGE_KERNEL)
            return area.addr
        for block in blocks:
            for pfn in range(block.pfn, block.pfn + PAGES_PER_2M):
                _pa.__free_pages(k, k.pages.pfn_to_page(pfn), 0)
        if area is not None:
            _vm.remove_vm_area_and_free(k, area)
        k.stat["execmem_populate_fail"] += 1
    return _vm.__vmalloc_node_range(k, size, PAGE_SIZE, start, MODULES_END, gfp, PAGE_KERNEL, 0,
                                    NUMA_NO_NODE, caller)


def execmem_cache_populate(k, size):
    """execmem_cache_populate(): a new chunk, filled with traps, made ROX in one call."""
    alloc_size = -(-size // PMD_SIZE) * PMD_SIZE
    addr = execmem_vmalloc_huge(k, alloc_size, "execmem_cache_populate")
    if addr is None and k.design.execmem_populate_exact and alloc_size != size:
        alloc_size = size   # 6.17: "add fallback for failures in vmalloc(VM_ALLOW_HUGE_VMAP)"
        addr = execmem_vmalloc_huge(k, alloc_size, "execmem_cache_populate")
    if addr is None:
        return -ENOMEM
    area = _vm.find_vm_area(k, addr)
    if not area.huge:
        k.stat["execmem_fallback"] += 1
    _cpa.set_memory_rox(k, addr, area.nr_pages)
    cache = k.design.rox_cache
    cache.chunks.append(area)
    cache.free[addr] = [[addr, addr + alloc_size]]
    k.stat["execmem_chunks"] += 1
    return 0


def __execmem_cache_alloc(k, size):
    """__execmem_cache_alloc(): the first free range, by address, that holds size bytes."""
    cache = k.design.rox_cache
    for base in sorted(cache.free):
        for rng in cache.free[base]:
            if rng[1] - rng[0] >= size:
                addr = rng[0]
                rng[0] += size
                if rng[0] == rng[1]:
                    cache.free[base].remove(rng)
                cache.busy[addr] = (base, size)
                return addr
    return None


def execmem_cache_alloc(k, size):
    """execmem_cache_alloc(): a page-rounded piece; populate a chunk when none fits."""
    size = PFN_UP(size) << PAGE_SHIFT
    addr = __execmem_cache_alloc(k, size)
    if addr is None:
        if execmem_cache_populate(k, size):
            return None
        addr = __execmem_cache_alloc(k, size)
    return addr


def execmem_cache_free(k, addr):
    """execmem_cache_free(): the piece back to its chunk's free ranges, then clean."""
    cache = k.design.rox_cache
    base, size = cache.busy.pop(addr)
    if k.design.execmem_free_rw:   # 6.17+: RW, fill with traps, ROX again
        execmem_force_rw(k, addr, size)
        _cpa.set_memory_rox(k, addr, size >> PAGE_SHIFT)
    ranges = cache.free[base]
    ranges.append([addr, addr + size])
    ranges.sort()
    merged = [ranges[0]]
    for rng in ranges[1:]:
        if rng[0] == merged[-1][1]:
            merged[-1][1] = rng[1]
        else:
            merged.append(rng)
    cache.free[base] = merged
    execmem_cache_clean(k)


def execmem_cache_clean(k):
    """execmem_cache_clean(): every wholly free, PMD-sized chunk: direct map valid, vfree()."""
    cache = k.design.rox_cache
    for area in list(cache.chunks):
        ranges = cache.free[area.addr]
        size = area.nr_pages * PAGE_SIZE
        if size % PMD_SIZE or ranges != [[area.addr, area.addr + size]]:
            continue
        for page in area.pages:   # execmem_set_direct_map_valid(vm, true)
            _cpa.set_direct_map_default_noflush(k, page)
        cache.chunks.remove(area)
        del cache.free[area.addr]
        _vm.vfree(k, area.addr)


def execmem_cache_free_exec(k, type, addr, size):
    """execmem_free(): a cached type back to the cache, anything else vfree()."""
    if type in k.design.execmem_rox_types and addr in k.design.rox_cache.busy:
        execmem_cache_free(k, addr)
    else:
        _vm.vfree(k, addr)


def execmem_cache_pools(k):
    """One row per chunk: its bytes, the bytes handed out."""
    cache = k.design.rox_cache
    out = []
    for area in cache.chunks:
        size = area.nr_pages * PAGE_SIZE
        free = sum(e - s for s, e in cache.free[area.addr])
        out.append({"kind": "execmem_cache", "addr": area.addr, "pool_bytes": size,
                    "in_use_bytes": size - free})
    return out


def check_execmem_cache(k):
    """Every chunk is a live area; busy pieces and free ranges tile it exactly."""
    cache = k.design.rox_cache
    for area in cache.chunks:
        if _vm.find_vm_area(k, area.addr) is not area:
            fail("execmem chunk mapped", f"{area!r}")
        size = area.nr_pages * PAGE_SIZE
        held = sum(e - s for s, e in cache.free[area.addr])
        held += sum(n for base, n in cache.busy.values() if base == area.addr)
        if held != size:
            fail("execmem chunk accounted", f"{area!r}: {held} of {size} bytes accounted")
