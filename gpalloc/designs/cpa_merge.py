"""CPA merge-back (Aaron Lu, "x86/mm/cpa: merge small mappings whenever possible", RFC 2022).

Not in any released kernel; a later design.  When all 512 PTEs of a split 2 MiB
region are equal again, CPA puts back one 2M entry and frees the page-table
page; when all 512 2M entries of a 1G region are equal too, it puts back the 1G
entry.  RFC 1/4 also restores _PAGE_GLOBAL on a present 4K entry, so a region
whose pages went RO and back to RW is uniform again.  Regions boot mapped with
4K pages stay as they are (in a real machine those are holes and the kernel
image).  Everything else is v5.11.
"""

from ..arch.x86.pgtable_types import (
    _PAGE_GLOBAL,
    _PAGE_PRESENT,
    PAGE_KERNEL,
    PG_LEVEL_1G,
    PG_LEVEL_2M,
    PG_LEVEL_4K,
)
from ..arch.x86.set_memory import free_split_page_table
from ..arch.x86.tlb import flush_tlb_all
from ..mm.page import PAGES_PER_1G
from .v5_11 import Linux511


def cpa_try_merge(k, p):
    """Merge 2 MiB region p back into one 2M entry (and its 1G region into a 1G entry)."""
    dm = k.dmap
    table = dm.pte.get(p)
    if table is None or p in k.boot_4k_regions or table.count(table[0]) != 512:
        return
    prot = table[0]
    del dm.pte[p]
    if prot != PAGE_KERNEL:
        dm.pmd[p] = prot
    c = dm.direct_pages_count
    c[PG_LEVEL_4K] -= 512
    c[PG_LEVEL_2M] += 1
    free_split_page_table(k, (PG_LEVEL_2M, p))
    k.stat["merges_2m"] += 1
    flush_tlb_all(k, "merge")
    g = p >> 9
    first = g << 9
    if (not k.gbpages or g == 0 or (g + 1) * PAGES_PER_1G > k.max_pfn
            or any(q in dm.pte for q in range(first, first + 512))):
        return
    prots = {dm.pmd.get(q, PAGE_KERNEL) for q in range(first, first + 512)}
    if len(prots) != 1:
        return
    for q in range(first, first + 512):
        dm.pmd.pop(q, None)
    dm.gb[g] = prots.pop()
    c[PG_LEVEL_2M] -= 512
    c[PG_LEVEL_1G] += 1
    free_split_page_table(k, (PG_LEVEL_1G, g))
    k.stat["merges_1g"] += 1
    flush_tlb_all(k, "merge")


class CpaMerge(Linux511):
    """v5.11 whose CPA merges uniform split regions back (Aaron Lu's RFC)."""

    name = "cpa-merge"
    summary = "Aaron Lu's 2022 CPA RFC: split direct-map regions merge back once uniform again"
    stat_keys = ("merges_2m", "merges_1g")

    def cpa_pte_prot(self, prot):
        """RFC 1/4: a present 4K entry gets _PAGE_GLOBAL back."""
        return prot | _PAGE_GLOBAL if prot & _PAGE_PRESENT else prot

    def cpa_after_change(self, k, region):
        """After each 4K change: try to merge the region (and its 1G region) back."""
        cpa_try_merge(k, region)
