"""Where the real allocator put an experiment's pages, from a capture's kmem trace.

What the trace shows on 6.18 (see data/measurements/README.md): each ``struct bpf_prog`` is a
``__vmalloc(GFP_KERNEL_ACCOUNT | __GFP_ZERO)``; accounted allocations skip the bulk allocator,
so every page shows as an ``mm_page_alloc`` event.  A pack's 512 pages come from
alloc_pages_bulk() (execmem, not accounted), which has no per-page event: they are seen when
the per-CPU list is refilled from the buddy (``mm_page_alloc_zone_locked``, percpu_refill=1)
and when the pack is freed (``mm_page_free`` by the kworker running bpf_prog_free_deferred()).
A 2 MiB or 1 GiB direct-map split allocates one page table page in split_large_page()
(``alloc_pages(GFP_KERNEL, 0)``), an ``mm_page_alloc`` with gfp exactly ``GFP_KERNEL``.
"""

from __future__ import annotations

from collections import Counter

PMD_PAGES_SHIFT = 9            # 2 MiB / 4 KiB
PROG_GFP = "GFP_KERNEL_ACCOUNT|__GFP_HIGHMEM|__GFP_ZERO|__GFP_NOWARN"   # bpf_prog_alloc()
PAGE_TABLE_GFP = "GFP_KERNEL"  # split_large_page()'s page table page
ALLOCS = ("mm_page_alloc", "mm_page_alloc_zone_locked")


def region(pfn: int) -> int:
    """The 2 MiB direct-map region (PMD) holding ``pfn``."""
    return pfn >> PMD_PAGES_SHIFT


def traced_allocs(events: list[dict]) -> set[int]:
    """pfns handed out by an ``mm_page_alloc`` event (any order)."""
    return {pfn for e in events if e["event"] == "mm_page_alloc" and e["pfn"]
            for pfn in range(e["pfn"], e["pfn"] + (1 << e["order"]))}


def prog_pages(loaded: list[dict]) -> set[int]:
    """pfns of the ``struct bpf_prog`` vmalloc pages (order 0, bpf_prog_alloc()'s gfp)."""
    return {e["pfn"] for e in loaded
            if e["event"] == "mm_page_alloc" and e["order"] == 0 and e["gfp"] == PROG_GFP}


def page_table_allocs(loaded: list[dict]) -> list[dict]:
    """``mm_page_alloc`` order 0 with gfp exactly GFP_KERNEL: split_large_page() page tables."""
    return [e for e in loaded
            if e["event"] == "mm_page_alloc" and e["order"] == 0 and e["gfp"] == PAGE_TABLE_GFP]


def pack_pages(loaded: list[dict], closed: list[dict]) -> set[int]:
    """pfns freed (order 0) by kworkers on close that no traced allocation handed out: the
    bulk-allocated pages, i.e. the packs' pages (plus any other bulk vmalloc of the run)."""
    known = traced_allocs(loaded)
    return {e["pfn"] for e in closed
            if e["event"] == "mm_page_free" and e["order"] == 0 and e["task"].startswith("kworker")
            and e["pfn"] not in known}


def refills(loaded: list[dict]) -> Counter:
    """Per-CPU list refills from the buddy: Counter of (order, migratetype)."""
    return Counter((e["order"], e["migratetype"]) for e in loaded
                   if e["event"] == "mm_page_alloc_zone_locked" and e["percpu_refill"] == 1)


def extfrag(events: list[dict]) -> list[dict]:
    """The ``mm_page_alloc_extfrag`` events (fallbacks into another migratetype's block)."""
    return [e for e in events if e["event"] == "mm_page_alloc_extfrag"]


def summary(loaded: list[dict], closed: list[dict]) -> dict:
    """Placement of one round: pack pages and their 2 MiB regions, page tables, fallbacks."""
    packs = pack_pages(loaded, closed)
    regions = Counter(region(pfn) for pfn in packs)
    progs = prog_pages(loaded)
    return {
        "pack_pages": len(packs),
        "pack_regions": len(regions),
        "pages_per_region": sorted(regions.values(), reverse=True),
        "prog_pages": len(progs),
        "prog_regions": len({region(p) for p in progs}),
        "page_table_allocs": len(page_table_allocs(loaded)),
        "refills_order_migratetype": dict(sorted(refills(loaded).items())),
        "extfrag": [{k: e[k] for k in ("pfn", "order", "migratetype", "fallback_order",
                                       "fallback_migratetype", "change_ownership")}
                    for e in extfrag(loaded)],
    }
