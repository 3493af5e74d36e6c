"""TLB flushes (arch/x86/mm/tlb.c), counted by kind: each global one is an IPI to every CPU."""

from ...mm.page import PAGE_SHIFT

tlb_single_page_flush_ceiling = 33
TLB_FLUSH_ALL = (1 << 64) - 1


def flush_tlb_all(k, why):
    """flush_tlb_all(): full flush on every CPU, global entries included."""
    k.stat["flush_tlb_all"] += 1
    k.stat[f"flush_tlb_all:{why}"] += 1


def flush_tlb_pages(k, npages, why):
    """on_each_cpu(__cpa_flush_tlb) / ranged flush: INVLPG of each page on every CPU."""
    k.stat["flush_tlb_range"] += 1
    k.stat["flush_tlb_range_pages"] += npages
    k.stat[f"flush_tlb_range:{why}"] += 1


def flush_tlb_kernel_range(k, start, end, why):
    """flush_tlb_kernel_range(): ranged if ≤ 33 pages, otherwise a full flush."""
    if end == TLB_FLUSH_ALL or (end - start) >> PAGE_SHIFT > tlb_single_page_flush_ceiling:
        flush_tlb_all(k, why)
    else:
        flush_tlb_pages(k, (end - start) >> PAGE_SHIFT, why)
