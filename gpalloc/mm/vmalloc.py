"""vmalloc (mm/vmalloc.c, v5.11) with RFC 2/3's vm_alloc_page()/vm_free_page() hooks.

An area's page array is filled by ``k.design.vm_area_alloc_pages`` (v5.11: one
order-0 page at a time from ``k.design.vm_alloc_page``, with the RFC's
VM_GROUP_PAGES from its grouped cache; 5.13+ designs: the bulk allocator) and
each page goes back through ``k.design.vm_free_page`` (gpalloc.designs).

Virtual areas are handed out lowest-fit with a trailing guard page; freed areas
go on the lazy purge list and keep their address range until a purge, which
costs one kernel-range TLB flush.  ``vm_remove_mappings`` does the
VM_FLUSH_RESET_PERMS dance on free: every page's direct-map alias invalid (splits
its 2M/1G mapping), one flush, every page back to default.

Simplified: the ≤ 1-page array of page pointers that v5.11 kmallocs is not
modelled (no slab); larger arrays are a nested vmalloc, as in the kernel.
Per-CPU vmap blocks (vm_map_ram) and KASAN shadows are not modelled.
"""

from bisect import bisect_right, insort

from ..arch.x86 import set_memory as _cpa
from ..arch.x86.pgtable_types import PAGE_KERNEL
from ..arch.x86.tlb import flush_tlb_kernel_range
from ..bug import WARN
from . import page_alloc as _pa
from .gfp import (
    __GFP_DMA,
    __GFP_DMA32,
    __GFP_HIGHMEM,
    __GFP_NOWARN,
    __GFP_ZERO,
    GFP_KERNEL,
    GFP_RECLAIM_MASK,
    gfp_t,
)
from .mmzone import NUMA_NO_NODE
from .page import OWNER_VMALLOC, PAGE_SHIFT, PAGE_SIZE, page_address

VM_IOREMAP = 0x001
VM_ALLOC = 0x002
VM_MAP = 0x004
VM_USERMAP = 0x008
VM_DMA_COHERENT = 0x010
VM_UNINITIALIZED = 0x020
VM_NO_GUARD = 0x040
VM_KASAN = 0x080
VM_FLUSH_RESET_PERMS = 0x100
VM_MAP_PUT_PAGES = 0x200
VM_GROUP_PAGES = 0x400          # RFC 2/3 only (5.13 reused 0x400 for VM_NO_HUGE_VMAP)
VM_FLAG_NAMES = {
    VM_IOREMAP: "VM_IOREMAP", VM_ALLOC: "VM_ALLOC", VM_MAP: "VM_MAP", VM_USERMAP: "VM_USERMAP",
    VM_DMA_COHERENT: "VM_DMA_COHERENT", VM_UNINITIALIZED: "VM_UNINITIALIZED",
    VM_NO_GUARD: "VM_NO_GUARD", VM_KASAN: "VM_KASAN",
    VM_FLUSH_RESET_PERMS: "VM_FLUSH_RESET_PERMS", VM_MAP_PUT_PAGES: "VM_MAP_PUT_PAGES",
    VM_GROUP_PAGES: "VM_GROUP_PAGES",
}
_VM_ALL = sum(VM_FLAG_NAMES)

VMALLOC_START = 0xFFFFC90000000000
VMALLOC_END = 0xFFFFE8FFFFFFFFFF
ULONG_MAX = (1 << 64) - 1


class vmap_area:
    """struct vmap_area: a reserved virtual range; ``vm`` is None once lazily freed."""

    __slots__ = ("va_start", "va_end", "vm")

    def __init__(self, start, end, vm=None):
        self.va_start, self.va_end, self.vm = start, end, vm


class vm_struct:
    """struct vm_struct: addr, size (with guard), flags, pages[], nr_pages, caller.

    ``prot[i]`` is the vmalloc-side PTE of page i (the model keeps it per page).
    """

    __slots__ = ("addr", "size", "flags", "pages", "nr_pages", "caller", "prot", "nested",
                 "phys_addr", "huge")

    def __init__(self, addr, size, flags, caller):
        self.addr, self.size, self.flags, self.caller = addr, size, flags, caller
        self.pages, self.nr_pages, self.prot, self.nested, self.phys_addr = [], 0, [], None, 0
        self.huge = False   # mapped with one PMD (later kernels' huge vmalloc; execmem)

    def __repr__(self):
        return (f"<vm_struct {self.addr:#x} pages={self.nr_pages} "
                f"flags={format_vm_flags(self.flags)} caller={self.caller}>")


def format_vm_flags(flags):
    """VM_* flags as text, e.g. ``VM_ALLOC|VM_FLUSH_RESET_PERMS``."""
    names = [n for bit, n in VM_FLAG_NAMES.items() if flags & bit]
    return "|".join(names) or "0"


class vmap_state:
    """Global vmalloc state: busy and lazily-freed ranges, the purge list, counters."""

    def __init__(self, nr_cpus):
        self.starts = []            # sorted va_start of every reserved range (busy + lazy)
        self.vas = {}               # va_start → vmap_area
        self.free_starts = [0]      # the free space "tree": sorted gap starts …
        self.free_end = {0: 1 << 64}   # … and where each gap ends
        self.purge_list = []        # lazily freed vmap_areas
        self.vmap_lazy_nr = 0       # pages on the purge list
        self.nr_vmalloc_pages = 0   # VmallocUsed
        self.lazy_max = nr_cpus.bit_length() * (32 << 20 >> PAGE_SHIFT)   # lazy_max_pages()


def lazy_max_pages(k):
    """lazy_max_pages(): fls(num_online_cpus()) × 32 MiB worth of pages."""
    return k.vmap.lazy_max


def _align_up(x, a):
    return (x + a - 1) & ~(a - 1)


def _find_fit(vm, size, align, vstart, vend):
    """Lowest address in [vstart, vend) where a free gap holds size bytes at this alignment.

    The loop is _align_up/max/min written out (issue 13: it runs over every gap below the
    fit); tests/test_fast_paths.py checks it against the plain form.
    """
    starts, ends = vm.free_starts, vm.free_end
    i = bisect_right(starts, vstart) - 1
    if i < 0:
        i = 0
    mask = align - 1
    n = len(starts)
    while i < n:
        gap_start = starts[i]
        if gap_start >= vend:
            break
        addr = ((gap_start if gap_start > vstart else vstart) + mask) & ~mask
        gap_end = ends[gap_start]
        if addr + size <= (gap_end if gap_end < vend else vend):
            return addr
        i += 1
    return None


def _take_gap(vm, addr, end):
    """Carve [addr, end) out of the free gap that contains it."""
    i = bisect_right(vm.free_starts, addr) - 1
    gap_start = vm.free_starts[i]
    gap_end = vm.free_end.pop(gap_start)
    del vm.free_starts[i]
    if gap_start < addr:
        vm.free_end[gap_start] = addr
        insort(vm.free_starts, gap_start)
    if end < gap_end:
        vm.free_end[end] = gap_end
        insort(vm.free_starts, end)


def _give_gap(vm, start, end):
    """Return [start, end) to the free space, merging with its neighbours."""
    i = bisect_right(vm.free_starts, start)
    if i < len(vm.free_starts) and vm.free_starts[i] == end:   # merge with the next gap
        end = vm.free_end.pop(end)
        del vm.free_starts[i]
    if i > 0 and vm.free_end[vm.free_starts[i - 1]] == start:  # and with the previous one
        vm.free_end[vm.free_starts[i - 1]] = end
        return
    vm.free_end[start] = end
    vm.free_starts.insert(i, start)


def alloc_vmap_area(k, size, align, vstart, vend, gfp):
    """alloc_vmap_area(): lowest free range that fits; purge the lazy list once if none."""
    vm = k.vmap
    for purged in (False, True):
        addr = _find_fit(vm, size, align, vstart, vend)
        if addr is not None:
            _take_gap(vm, addr, addr + size)
            va = vmap_area(addr, addr + size)
            vm.vas[addr] = va
            insort(vm.starts, addr)
            return va
        if not purged:
            purge_vmap_area_lazy(k)
    if not gfp & __GFP_NOWARN:
        WARN(k, f"vmap allocation for size {size} failed: use vmalloc=<size> to increase size")
    return None


def _release_va(k, va):
    vm = k.vmap
    del vm.vas[va.va_start]
    vm.starts.pop(bisect_right(vm.starts, va.va_start) - 1)
    _give_gap(vm, va.va_start, va.va_end)


def find_vmap_area(k, addr):
    """find_vmap_area(): the busy area whose range contains addr (lazy ones excluded)."""
    vm = k.vmap
    j = bisect_right(vm.starts, addr) - 1
    if j < 0:
        return None
    va = vm.vas[vm.starts[j]]
    if va.vm is not None and va.va_start <= addr < va.va_end:
        return va
    return None


def find_vm_area(k, addr):
    """find_vm_area(): the vm_struct containing addr, or None."""
    va = find_vmap_area(k, addr)
    return va.vm if va else None


def __get_vm_area_node(k, size, align, flags, start, end, node, gfp, caller):
    """__get_vm_area_node(): a vm_struct with its range (+1 guard page unless VM_NO_GUARD)."""
    if not flags & VM_NO_GUARD:
        size += PAGE_SIZE
    va = alloc_vmap_area(k, size, align, start, end, gfp)
    if va is None:
        return None
    area = vm_struct(va.va_start, size, flags, caller)
    va.vm = area
    return area


# ---------------------------------------------------------------- lazy purge

def __purge_vmap_area_lazy(k, start, end):
    """__purge_vmap_area_lazy(): one flush over [start, end) ∪ every lazy area, then release."""
    vm = k.vmap
    if not vm.purge_list:
        return False
    start = min(start, min(va.va_start for va in vm.purge_list))
    end = max(end, max(va.va_end for va in vm.purge_list))
    flush_tlb_kernel_range(k, start, end, "purge")
    for va in vm.purge_list:
        _release_va(k, va)
    vm.purge_list.clear()
    vm.vmap_lazy_nr = 0
    k.stat["lazy_purges"] += 1
    return True


def purge_vmap_area_lazy(k):
    """purge_vmap_area_lazy()."""
    return __purge_vmap_area_lazy(k, ULONG_MAX, 0)


def _vm_unmap_aliases(k, start, end, flush):
    """_vm_unmap_aliases(): purge lazy areas; if none but a flush is wanted, flush [start, end)."""
    k.stat["vm_unmap_aliases"] += 1
    if not __purge_vmap_area_lazy(k, start, end) and flush:
        flush_tlb_kernel_range(k, start, end, "unmap_aliases")


def vm_unmap_aliases(k):
    """vm_unmap_aliases(): what every change_page_attr_set_clr() does first."""
    _vm_unmap_aliases(k, ULONG_MAX, 0, False)


def free_vmap_area_noflush(k, va):
    """free_vmap_area_noflush(): onto the purge list; purge if over lazy_max_pages()."""
    vm = k.vmap
    va.vm = None
    vm.purge_list.append(va)
    vm.vmap_lazy_nr += (va.va_end - va.va_start) >> PAGE_SHIFT
    if vm.vmap_lazy_nr > lazy_max_pages(k):
        purge_vmap_area_lazy(k)


# ---------------------------------------------------------------- allocation


_page_gfp = {}   # vmalloc_page_gfp() by mask: a pure function of it, computed once


def vmalloc_page_gfp(gfp):
    """The gfp __vmalloc_area_node() allocates each page with: | __GFP_NOWARN, | __GFP_HIGHMEM.

    (__GFP_HIGHMEM only when neither __GFP_DMA nor __GFP_DMA32 is set, as in v5.11.)
    """
    out = _page_gfp.get(int(gfp))
    if out is None:
        out = _page_gfp[int(gfp)] = _vmalloc_page_gfp(gfp)
    return out


def _vmalloc_page_gfp(gfp):
    gfp = gfp_t(gfp | __GFP_NOWARN)
    if not gfp & (__GFP_DMA | __GFP_DMA32):
        gfp = gfp_t(gfp | __GFP_HIGHMEM)
    return gfp


def __vmalloc_area_node(k, area, gfp, prot, node, vm_flags):
    """__vmalloc_area_node(): page array, then the pages (vm_area_alloc_pages), then map."""
    nr_pages = (area.size - (0 if area.flags & VM_NO_GUARD else PAGE_SIZE)) >> PAGE_SHIFT
    array_size = nr_pages * 8
    if array_size > PAGE_SIZE:   # kmalloc otherwise (slab is not modelled)
        nested_gfp = gfp_t((gfp & GFP_RECLAIM_MASK) | __GFP_ZERO)
        area.nested = __vmalloc_node(k, array_size, 1, nested_gfp, node, area.caller)
        if area.nested is None:
            remove_vm_area_and_free(k, area)
            return None
    gfp = vmalloc_page_gfp(gfp)
    # vm_area_alloc_pages(): the running design fills the page array (v5.11: one page at a
    # time through RFC 2/3's vm_alloc_page() hook; 5.13+: the bulk allocator)
    area.pages = k.design.vm_area_alloc_pages(k, area, node, gfp, nr_pages, vm_flags)
    for page in area.pages:
        page.owner = OWNER_VMALLOC
    if len(area.pages) < nr_pages:
        area.nr_pages = len(area.pages)
        k.vmap.nr_vmalloc_pages += area.nr_pages
        k.stat["vmalloc_fail"] += 1
        __vunmap(k, area.addr, True)
        return None
    area.nr_pages = nr_pages
    area.prot = [int(prot)] * nr_pages
    k.vmap.nr_vmalloc_pages += nr_pages
    return area.addr


def vmap_huge_pages(k, area, pages, prot):
    """__vmalloc_area_node()'s PMD-mapped case (huge vmalloc, 5.13+): map pages with one PMD."""
    area.pages = list(pages)
    for page in area.pages:
        page.owner = OWNER_VMALLOC
    area.nr_pages = len(area.pages)
    area.prot = [int(prot)] * area.nr_pages
    area.huge = True
    k.vmap.nr_vmalloc_pages += area.nr_pages


def remove_vm_area_and_free(k, area):
    """Undo __get_vm_area_node() when nothing was mapped yet (free_vm_area)."""
    va = find_vmap_area(k, area.addr)
    free_vmap_area_noflush(k, va)


def __vmalloc_node_range(k, size, align, start, end, gfp, prot, vm_flags, node, caller):
    """__vmalloc_node_range(): reserve a range in [start, end), fill it with pages, map them.

    Returns the start address, or None (NULL) on failure.
    """
    _validate_vmalloc_args(k, size, align, start, end, vm_flags, node)
    if type(gfp) is not gfp_t:
        gfp = gfp_t(gfp)
    real_size = size
    size = _align_up(size, PAGE_SIZE)
    flags = VM_ALLOC | VM_UNINITIALIZED | vm_flags
    area = None
    if size and size >> PAGE_SHIFT <= _pa.totalram_pages(k):
        area = __get_vm_area_node(k, size, align, flags, start, end, node, gfp, caller)
    addr = __vmalloc_area_node(k, area, gfp, prot, node, flags) if area else None
    if addr is None:
        if area is None and not gfp & __GFP_NOWARN:
            WARN(k, f"{caller}: vmalloc: allocation failure: {real_size} bytes, "
                    f"mode:{int(gfp):#x}({gfp})")
        return None
    area.flags &= ~VM_UNINITIALIZED
    k.stat["vmalloc_calls"] += 1
    return addr


def _validate_vmalloc_args(k, size, align, start, end, vm_flags, node):
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"size: must be a non-negative number of bytes, got {size!r}")
    if not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise ValueError(f"align: must be a power of two, got {align!r}")
    if start >= end:
        raise ValueError(f"start/end: empty range {start:#x}-{end:#x}")
    if vm_flags & ~_VM_ALL:
        raise ValueError(f"vm_flags: unknown bits {vm_flags & ~_VM_ALL:#x} in {vm_flags:#x}")
    if node != NUMA_NO_NODE:
        k.check_nid(node)


def __vmalloc_node(k, size, align, gfp, node, caller):
    """__vmalloc_node(): the whole vmalloc range, PAGE_KERNEL, no extra flags."""
    addr = __vmalloc_node_range(k, size, align, VMALLOC_START, VMALLOC_END, gfp, PAGE_KERNEL,
                                0, node, caller)
    return find_vm_area(k, addr) if addr is not None else None


def vmalloc(k, size, caller="vmalloc"):
    """vmalloc(size): GFP_KERNEL, any node."""
    return __vmalloc_node_range(k, size, 1, VMALLOC_START, VMALLOC_END, GFP_KERNEL,
                                PAGE_KERNEL, 0, NUMA_NO_NODE, caller)


def set_vm_flush_reset_perms(k, addr):
    """set_vm_flush_reset_perms(): mark the area so vfree resets its direct-map aliases."""
    area = find_vm_area(k, addr)
    if area is not None:
        area.flags |= VM_FLUSH_RESET_PERMS
    return area is not None


# ---------------------------------------------------------------- freeing

def set_area_direct_map(k, area, set_direct_map):
    """set_area_direct_map(): apply one set_direct_map_*_noflush to every page of the area."""
    for page in area.pages:
        set_direct_map(k, page)


def vm_remove_mappings(k, area, deallocate_pages):
    """vm_remove_mappings(): unmap, lazily free the range, and reset the direct map if asked."""
    va = find_vmap_area(k, area.addr)
    area.prot = [0] * area.nr_pages        # vunmap_range_noflush(): PTEs cleared
    free_vmap_area_noflush(k, va)
    if not area.flags & VM_FLUSH_RESET_PERMS:
        return
    if not deallocate_pages:
        vm_unmap_aliases(k)
        return
    if not area.pages:
        return
    addrs = [page_address(p) for p in area.pages]
    start, end = min(addrs), max(addrs) + PAGE_SIZE
    set_area_direct_map(k, area, _cpa.set_direct_map_invalid_noflush)
    _vm_unmap_aliases(k, start, end, True)
    set_area_direct_map(k, area, _cpa.set_direct_map_default_noflush)
    k.stat["reset_perms_frees"] += 1


def __vunmap(k, addr, deallocate_pages):
    """__vunmap(): find the area, remove its mappings, give each page back (vm_free_page)."""
    if addr & (PAGE_SIZE - 1):
        WARN(k, f"Trying to vfree() bad address ({addr:#x})")
        return
    area = find_vm_area(k, addr)
    if area is None:
        WARN(k, f"Trying to vfree() nonexistent vm area ({addr:#x})")
        return
    vm_remove_mappings(k, area, deallocate_pages)
    if deallocate_pages:
        # one vm_free_page() (RFC 2/3's hook) per page, through the design
        k.design.vm_area_free_pages(k, area.pages, area.flags)
        k.vmap.nr_vmalloc_pages -= area.nr_pages
        if area.nested is not None:      # kvfree(area->pages)
            __vunmap(k, area.nested.addr, True)
    area.pages = []
    k.stat["vfree_calls"] += 1


def vfree(k, addr):
    """vfree(): NULL is fine; anything else must be an address inside a live vmalloc area."""
    if addr is None or addr == 0:
        return
    if not isinstance(addr, int) or isinstance(addr, bool):
        raise ValueError(f"addr: vfree takes an address (int), got {addr!r}")
    __vunmap(k, addr, True)


def vmalloc_nr_pages(k):
    """vmalloc_nr_pages(): pages held by vmalloc areas (/proc/meminfo VmallocUsed)."""
    return k.vmap.nr_vmalloc_pages


def lazy_areas(k):
    """vmap_areas on the purge list (freed, range not yet reusable)."""
    return list(k.vmap.purge_list)


def busy_areas(k):
    """Live vm_structs in address order (what /proc/vmallocinfo lists)."""
    vm = k.vmap
    return [vm.vas[s].vm for s in vm.starts if vm.vas[s].vm is not None]
