"""The x86-64 direct map and Change Page Attribute (arch/x86/mm/init*.c, mm/pat/set_memory.c).

The direct map is kept sparsely: 1G entries in ``gb``, 2M entries with a
non-default prot in ``pmd``, and a 512-entry PTE table in ``pte`` for every 2 MiB
region mapped with 4K pages.  A region in none of them is an ordinary 2M entry
with PAGE_KERNEL.  v5.11 never merges entries back, so the counters only move
down (1G → 2M → 4K); a design may (``k.design.cpa_after_change``).

Simplified: static_protections() (kernel text/rodata rules) and the kernel
high-map alias are left out — vmalloc and module pages are never kernel text.
"""

from ...bug import WARN
from ...errno import EFAULT, ENOMEM
from ...mm import page_alloc as _pa
from ...mm import vmalloc as _vmalloc
from ...mm.gfp import GFP_KERNEL
from ...mm.page import (
    OWNER_KERNEL,
    OWNER_PAGETABLE,
    PAGE_OFFSET,
    PAGE_SHIFT,
    PAGES_PER_1G,
    PAGES_PER_2M,
    virt_to_pfn,
)
from .pgtable_types import (
    _PAGE_GLOBAL,
    _PAGE_NX,
    _PAGE_PRESENT,
    _PAGE_RW,
    PAGE_KERNEL,
    PG_LEVEL_1G,
    PG_LEVEL_2M,
    PG_LEVEL_4K,
)
from .tlb import flush_tlb_all, flush_tlb_pages, tlb_single_page_flush_ceiling

_PAGE_KERNEL_INT = int(PAGE_KERNEL)   # entries hold plain ints; format with format_prot()
LEVEL_PAGES = {PG_LEVEL_4K: 1, PG_LEVEL_2M: PAGES_PER_2M, PG_LEVEL_1G: PAGES_PER_1G}


class direct_map:
    """The kernel's direct map of all RAM and direct_pages_count[] (entries per level)."""

    def __init__(self, max_pfn):
        self.max_pfn = max_pfn
        self.gb = {}        # 1G index → prot of a 1G entry
        self.pmd = {}       # 2M index → prot of a 2M entry that is not PAGE_KERNEL
        self.pte = {}       # 2M index → list of 512 4K prots
        self.direct_pages_count = [0, 0, 0, 0]
        self.pt_pages = []  # pfns of page-table pages that splits allocated (never freed)
        self.pt_of = {}     # (level, index) split → its page-table page (for merging back)

    def lookup_address(self, pfn):
        """lookup_address(): (level, prot) of the entry mapping this pfn."""
        g, p = pfn >> 18, pfn >> 9
        if g in self.gb:
            return PG_LEVEL_1G, self.gb[g]
        table = self.pte.get(p)
        if table is not None:
            return PG_LEVEL_4K, table[pfn & 511]
        return PG_LEVEL_2M, self.pmd.get(p, _PAGE_KERNEL_INT)

    def kb(self):
        """DirectMap4k/2M/1G in kB, as arch_report_meminfo() prints them."""
        c = self.direct_pages_count
        return {"DirectMap4k": c[PG_LEVEL_4K] << 2, "DirectMap2M": c[PG_LEVEL_2M] << 11,
                "DirectMap1G": c[PG_LEVEL_1G] << 20}


def kernel_physical_mapping_init(k, boot_4k_regions, gbpages):
    """init_memory_mapping() at boot: 4K where forced, 1G where allowed, else 2M.

    ``boot_4k_regions`` are the 2 MiB regions boot maps with 4K pages: the first
    one (the ISA/BIOS low megabyte) plus the modelled "boot-time 4K" around the
    kernel image.  The first 1G region is never a 1G page (it holds them).
    """
    dm = direct_map(k.max_pfn)
    for p in boot_4k_regions:
        dm.pte[p] = [int(PAGE_KERNEL)] * 512
    taken = {p >> 9 for p in boot_4k_regions}
    if gbpages:
        for g in range(1, k.max_pfn // PAGES_PER_1G):
            if g not in taken:
                dm.gb[g] = int(PAGE_KERNEL)
    n2m = k.max_pfn // PAGES_PER_2M - len(dm.pte) - 512 * len(dm.gb)
    dm.direct_pages_count = [0, 512 * len(dm.pte), n2m, len(dm.gb)]
    return dm


def _clear_protnone(prot):
    """pgprot_clear_protnone_bits(): a non-present entry loses _PAGE_GLOBAL."""
    return prot if prot & _PAGE_PRESENT else prot & ~_PAGE_GLOBAL


def split_large_page(k, level, idx, old):
    """split_large_page(): one page-table page, entries copied, count moved, global flush."""
    base = _pa.alloc_pages(k, GFP_KERNEL, 0)
    if base is None:
        return -ENOMEM
    base.owner = OWNER_PAGETABLE
    dm = k.dmap
    dm.pt_pages.append(base.pfn)
    dm.pt_of[(level, idx)] = base.pfn
    prot = _clear_protnone(old)
    c = dm.direct_pages_count
    if level == PG_LEVEL_1G:
        del dm.gb[idx]
        if prot != PAGE_KERNEL:
            for p in range(idx << 9, (idx + 1) << 9):
                dm.pmd[p] = prot
        c[PG_LEVEL_1G] -= 1
        c[PG_LEVEL_2M] += 512
        k.stat["splits_1g"] += 1
    else:
        dm.pmd.pop(idx, None)
        dm.pte[idx] = [prot] * 512
        c[PG_LEVEL_2M] -= 1
        c[PG_LEVEL_4K] += 512
        k.stat["splits_2m"] += 1
    k.trace("split_large_page", level="1G" if level == PG_LEVEL_1G else "2M", idx=idx)
    flush_tlb_all(k, "split")
    return 0


def __change_page_attr_dmap(k, pfn, numpages, set_, clr, force_split=False):
    """__change_page_attr() on the direct-map address of pfn.

    Returns ``(pages handled, changed)`` or ``(-errno, False)``.  Implements the
    same-prot shortcut, the whole-large-page shortcut, and the split-and-repeat.
    """
    dm = k.dmap
    if not 0 <= pfn < dm.max_pfn:
        return 1, False     # not mapped: holes are tolerated for the direct map
    design = k.design
    while True:
        level, old = dm.lookup_address(pfn)
        new = _clear_protnone((old & ~clr) | set_)
        if level == PG_LEVEL_4K:
            new = design.cpa_pte_prot(new)
            if new == old:
                return 1, False
            dm.pte[pfn >> 9][pfn & 511] = new
            design.cpa_after_change(k, pfn >> 9)
            return 1, True
        size = LEVEL_PAGES[level]
        base = pfn & ~(size - 1)
        n = min(numpages, base + size - pfn)
        if not force_split:
            if new == old:
                k.stat["cpa_sameprot"] += 1
                return n, False
            if pfn == base and n == size:
                k.stat["cpa_preserved"] += 1
                if level == PG_LEVEL_1G:
                    dm.gb[pfn >> 18] = new
                elif new == PAGE_KERNEL:
                    dm.pmd.pop(pfn >> 9, None)
                else:
                    dm.pmd[pfn >> 9] = new
                return n, True
        idx = pfn >> 18 if level == PG_LEVEL_1G else pfn >> 9
        err = split_large_page(k, level, idx, old)
        if err:
            return err, False


def free_split_page_table(k, key):
    """Free the page-table page a split made (only a merge-back design gives one back)."""
    pfn = k.dmap.pt_of.pop(key, None)
    if pfn is None:
        return
    k.dmap.pt_pages.remove(pfn)
    page = k.pages.pfn_to_page(pfn)
    page.owner = OWNER_KERNEL
    _pa.__free_pages(k, page, 0)


def is_direct_map_addr(k, addr):
    """Does addr lie in the direct map of RAM (virt_addr_valid)?"""
    return PAGE_OFFSET <= addr < PAGE_OFFSET + (k.max_pfn << PAGE_SHIFT)


def change_page_attr_set_clr(k, addr, numpages, set_, clr, force_split=False,
                             checkalias=True, name="change_page_attr_set_clr"):
    """change_page_attr_set_clr(): vm_unmap_aliases, change each page (+ its alias), flush."""
    if numpages < 0:
        raise ValueError(f"{name}: numpages must be ≥ 0, got {numpages}")
    if not set_ and not clr and not force_split:
        return 0
    if addr & 0xFFF:
        WARN(k, f"{name}: misaligned address {addr:#x}")
        addr &= ~0xFFF
    k.trace(name, addr=addr, numpages=numpages)
    _vmalloc.vm_unmap_aliases(k)
    checkalias = checkalias and (set_ | clr) != _PAGE_NX
    flushtlb = force_flush_all = False
    cur, left = addr, numpages
    area = None
    while left > 0:
        if is_direct_map_addr(k, cur):
            handled, changed = __change_page_attr_dmap(k, virt_to_pfn(cur), left, set_, clr,
                                                       force_split)
            if handled < 0:
                return handled
        else:
            # the next page is usually in the area just looked up (nothing here frees one)
            if area is None or not area.addr <= cur < area.addr + area.size:
                area = _vmalloc.find_vm_area(k, cur)
            if area is None or not area.pages:
                WARN(k, f"CPA: called for zero pte. vaddr = {cur:#x} cpa->vaddr = {addr:#x}")
                return -EFAULT
            i = (cur - area.addr) >> PAGE_SHIFT
            if i >= area.nr_pages:
                WARN(k, f"CPA: called for zero pte. vaddr = {cur:#x} cpa->vaddr = {addr:#x}")
                return -EFAULT
            old = area.prot[i]
            new = _clear_protnone((old & ~clr) | set_)
            changed = new != old
            # a PMD-mapped area changed a whole PMD at a time handles 512 pages in one step
            handled = 512 if area.huge and i % 512 == 0 and left >= 512 and not force_split \
                else 1
            area.prot[i:i + handled] = [new] * handled
            if checkalias:   # cpa_process_alias(): the same change on the direct-map alias
                force_flush_all = True
                a_set, a_clr = k.design.cpa_alias_masks(set_, clr)
                err, _ = __change_page_attr_dmap(k, area.pages[i].pfn, handled, a_set, a_clr,
                                                 force_split)
                if err < 0:
                    return err
        flushtlb |= changed
        left -= handled
        cur += handled << PAGE_SHIFT
    if flushtlb:   # cpa_flush()
        if force_flush_all or numpages > tlb_single_page_flush_ceiling:
            flush_tlb_all(k, "cpa")
        else:
            flush_tlb_pages(k, numpages, "cpa")
    return 0


def set_memory_ro(k, addr, numpages):
    """set_memory_ro(): clear _PAGE_RW (alias checked: the direct map goes RO too)."""
    return change_page_attr_set_clr(k, addr, numpages, 0, _PAGE_RW, name="set_memory_ro")


def set_memory_rw(k, addr, numpages):
    """set_memory_rw(): set _PAGE_RW (alias checked)."""
    return change_page_attr_set_clr(k, addr, numpages, _PAGE_RW, 0, name="set_memory_rw")


def set_memory_x(k, addr, numpages):
    """set_memory_x(): clear _PAGE_NX; NX-only changes skip the alias (direct map stays NX)."""
    return change_page_attr_set_clr(k, addr, numpages, 0, _PAGE_NX, name="set_memory_x")


def set_memory_nx(k, addr, numpages):
    """set_memory_nx(): set _PAGE_NX (no alias)."""
    return change_page_attr_set_clr(k, addr, numpages, _PAGE_NX, 0, name="set_memory_nx")


def set_memory_np(k, addr, numpages):
    """set_memory_np(): clear _PAGE_PRESENT (alias checked)."""
    return change_page_attr_set_clr(k, addr, numpages, 0, _PAGE_PRESENT, name="set_memory_np")


def set_memory_4k(k, addr, numpages):
    """set_memory_4k(): change nothing but force 4K mappings (alias checked)."""
    return change_page_attr_set_clr(k, addr, numpages, 0, 0, force_split=True,
                                    name="set_memory_4k")


def set_memory_rox(k, addr, numpages):
    """set_memory_rox() (6.2+, used by later designs): clear RW and NX together."""
    return change_page_attr_set_clr(k, addr, numpages, 0, _PAGE_RW | _PAGE_NX,
                                    name="set_memory_rox")


def set_direct_map_invalid_noflush(k, page):
    """set_direct_map_invalid_noflush(): clear PRESENT|RW on one page; no flush, no alias."""
    err, _ = __change_page_attr_dmap(k, page.pfn, 1, 0, _PAGE_PRESENT | _PAGE_RW)
    return min(err, 0)


def set_direct_map_default_noflush(k, page):
    """set_direct_map_default_noflush(): set PRESENT|RW on one page; no flush, no alias."""
    err, _ = __change_page_attr_dmap(k, page.pfn, 1, _PAGE_PRESENT | _PAGE_RW, 0)
    return min(err, 0)
