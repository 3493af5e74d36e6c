"""Linux 6.18's page allocator (gpalloc.mm.page_alloc_6_18): pcp sizing and refills, claim and
steal, the bulk allocator, freeing — each against the 6.18 semantics it models."""

import pytest

from gpalloc import Machine
from gpalloc.mm import page_alloc_6_18 as pa
from gpalloc.mm.gfp import (
    __GFP_NOWARN,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_KERNEL_ACCOUNT,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    ZONE_NORMAL,
)
from gpalloc.mm.mmzone import get_pageblock_migratetype, zone, zone_batchsize
from gpalloc.mm.page import OWNER_PAGECACHE
from gpalloc.mm.page_alloc import ALLOC_NOFRAGMENT, alloc_pages


@pytest.fixture
def m():
    return Machine(design="6.18", node_mem="2G", seed=1)


def _zone(m, name="DMA32"):
    return next(z for z in m.k.zones if z.name == name)


def test_pcp_sizing_matches_the_measured_vm():
    # data/measurements/b1-05-*/phases/00-before/zoneinfo.txt, Normal: managed 884736,
    # low 11246, two CPUs on the node -> batch 63, high_min 5623, high_max 55296
    z = zone(0, ZONE_NORMAL, 1 << 20, 2 << 20)
    z.managed_pages, z._watermark = 884736, [8997, 11246, 13495]
    batch = zone_batchsize(z.managed_pages)
    pa.zone_set_pageset_high_and_batch(z, batch, 2, range(2))
    assert (batch, z.pcp[0].high_min, z.pcp[0].high_max) == (63, 5623, 55296)
    assert z.pcp[1].high == 5623 and len(z.pcp[0].lists) == pa.NR_PCP_LISTS == 14


def test_list_index_per_order_and_thp():
    assert [pa.order_to_pindex(MIGRATE_UNMOVABLE, o) for o in range(4)] == [0, 3, 6, 9]
    assert pa.order_to_pindex(MIGRATE_MOVABLE, 9) == 13
    assert pa.order_to_pindex(MIGRATE_UNMOVABLE, 9) == 12
    assert [pa.pcp_allowed_order(o) for o in (0, 3, 4, 8, 9, 10)] == \
        [True, True, False, False, True, False]


def test_refills_double_without_frees_and_a_free_halves_them(m):
    k = m.k
    z = _zone(m)
    pcp = z.pcp[0]
    sizes, before = [], 0
    for _ in range(4100):
        lst = pcp.list_for(MIGRATE_UNMOVABLE)
        empty = not lst
        alloc_pages(k, GFP_KERNEL, 0)
        if empty:
            sizes.append(pcp.count + 1 - before)
        before = pcp.count
    assert sizes[:6] == [63, 126, 252, 504, 1008, 2016]   # batch << alloc_factor, up to 5
    assert pcp.alloc_factor == pa.CONFIG_PCP_BATCH_SCALE_MAX
    page = alloc_pages(k, GFP_KERNEL, 0)
    m.free_pages(page)
    assert pcp.alloc_factor == pa.CONFIG_PCP_BATCH_SCALE_MAX >> 1
    assert pcp.high > pcp.high_min    # refills grew high (the zone is above its high mark)


def test_claim_takes_a_whole_order_10_block_and_retypes_both_pageblocks(m):
    k = m.k
    page = alloc_pages(k, GFP_KERNEL, 0)      # no Unmovable free block anywhere yet
    z = k.zone_of(page.pfn)
    block = page.pfn & ~1023
    assert k.stat["pgalloc_claim"] == 1
    assert get_pageblock_migratetype(z, block) == MIGRATE_UNMOVABLE
    assert get_pageblock_migratetype(z, block + 512) == MIGRATE_UNMOVABLE
    ev = [f for e, f in m.events() if e == "mm_page_alloc_extfrag"][0]
    assert (ev["fallback_order"], ev["fallback_migratetype"], ev["change_ownership"]) == \
        (10, MIGRATE_MOVABLE, 1)
    # the refill walked the claimed block upward from its first page
    lst = z.pcp[0].list_for(MIGRATE_UNMOVABLE)
    assert page.pfn == block and sorted(lst) == list(range(block + 1, block + 63))


def _half_used_pageblock(m, owner):
    """A Movable pageblock with one free order-3 block, its other 504 pages held by ``owner``."""
    k = m.k
    block = alloc_pages(k, GFP_HIGHUSER_MOVABLE | __GFP_NOWARN, 9)
    z = k.zone_of(block.pfn)
    for pfn in range(block.pfn, block.pfn + 512):
        p = k.pages.pfn_to_page(pfn)
        p._refcount, p.owner, p.order = 1, owner, 0
    for pfn in range(block.pfn, block.pfn + 8):
        k.pages.pfn_to_page(pfn)._refcount = 0
    pa.__free_one_page(k, z, block.pfn, 3, MIGRATE_MOVABLE)
    return z, k.pages.pfn_to_page(block.pfn)


def test_claim_below_pageblock_order_needs_half_the_block_free_or_alike(m):
    z, head = _half_used_pageblock(m, "kernel")   # unmovable pages count as alike
    got = pa.try_to_claim_block(m.k, z, head, 3, 0, MIGRATE_UNMOVABLE, MIGRATE_MOVABLE)
    assert got is not None and get_pageblock_migratetype(z, head.pfn) == MIGRATE_UNMOVABLE
    m2 = Machine(design="6.18", node_mem="2G", seed=1)
    z2, head2 = _half_used_pageblock(m2, OWNER_PAGECACHE)   # movable pages: 8 < 256
    assert pa.try_to_claim_block(m2.k, z2, head2, 3, 0, MIGRATE_UNMOVABLE,
                                 MIGRATE_MOVABLE) is None
    assert get_pageblock_migratetype(z2, head2.pfn) == MIGRATE_MOVABLE


def test_steal_takes_the_smallest_block_and_keeps_the_pageblock_type(m):
    z, head = _half_used_pageblock(m, OWNER_PAGECACHE)
    page = pa.__rmqueue_steal(m.k, z, 0, MIGRATE_UNMOVABLE)
    assert page.pfn == head.pfn                       # the order-3 block, not an order-10 one
    assert get_pageblock_migratetype(z, head.pfn) == MIGRATE_MOVABLE
    assert sorted(z.free_area[0][MIGRATE_MOVABLE]) == [head.pfn + 1]   # expanded as Movable
    assert m.k.stat["pgalloc_steal"] == 1


def test_nofragment_forbids_steals_and_small_claims(m):
    z, head = _half_used_pageblock(m, "kernel")
    for order in range(pa.MAX_PAGE_ORDER + 1):   # leave only the order-3 Movable block
        for lst in z.free_area[order]:
            for pfn in [p for p in lst if p != head.pfn]:
                pa.del_page_from_free_list(z, m.k.pages.pfn_to_page(pfn), order)
    z.pristine = []
    mode = [pa.RMQUEUE_NORMAL]
    assert pa.__rmqueue(m.k, z, 0, MIGRATE_UNMOVABLE, ALLOC_NOFRAGMENT, mode) is None
    assert pa.__rmqueue(m.k, z, 0, MIGRATE_RECLAIMABLE, 0, mode) is not None


def test_bulk_serves_from_the_pcp_and_accounted_requests_go_one_page_at_a_time(m):
    k = m.k
    pages = pa.alloc_pages_bulk(k, GFP_KERNEL, 0, 100)
    assert len(pages) == 100 and k.stat["pgalloc_bulk"] == 100
    assert all(p._refcount == 1 for p in pages)
    one = pa.alloc_pages_bulk(k, GFP_KERNEL_ACCOUNT, 0, 100)
    assert len(one) == 1 and k.stat["pgalloc_bulk"] == 100
    assert len(pa.alloc_pages_bulk(k, GFP_KERNEL, 0, 1)) == 1 and k.stat["pgalloc_bulk"] == 100


def test_vmalloc_fills_the_page_array_in_requests_of_at_most_100(m, monkeypatch):
    asked = []
    real = pa.alloc_pages_bulk

    def spy(k, gfp, nid, n):
        asked.append(n)
        return real(k, gfp, nid, n)
    monkeypatch.setattr(pa, "alloc_pages_bulk", spy)
    assert m.vmalloc(512 * 4096) is not None
    assert asked == [100, 100, 100, 100, 100, 12]


def test_drain_takes_the_freed_list_first_from_its_tail(m):
    k = m.k
    z = _zone(m)
    pcp = z.pcp[0]
    pages = [alloc_pages(k, GFP_KERNEL, 0) for _ in range(10)]
    for p in pages:
        m.free_pages(p)
    lst = pcp.list_for(MIGRATE_UNMOVABLE)
    oldest, newest, count = lst[0], lst[-1], pcp.count
    pa.free_pcppages_bulk(k, z, 1, pcp, pa.order_to_pindex(MIGRATE_UNMOVABLE, 0))
    assert oldest not in lst and newest == lst[-1] and pcp.count == count - 1
    assert k.pages.peek(oldest).owner is None   # back in the buddy (maybe merged)


def test_merging_past_a_pageblock_retypes_the_buddy(m):
    k = m.k
    z = _zone(m)
    block = alloc_pages(k, GFP_HIGHUSER_MOVABLE | __GFP_NOWARN, 10)
    base = block.pfn
    pa.set_pageblock_migratetype(z, base, MIGRATE_UNMOVABLE)
    block._refcount = 0
    pa.__free_one_page(k, z, base + 512, 9, MIGRATE_MOVABLE)          # Movable half free
    pa.__free_one_page(k, z, base, 9, MIGRATE_UNMOVABLE)               # merges into order 10
    assert base in z.free_area[10][MIGRATE_UNMOVABLE]
    assert get_pageblock_migratetype(z, base + 512) == MIGRATE_UNMOVABLE


def test_the_machine_stays_consistent(m):
    for _ in range(3):
        addrs = [m.vmalloc(300 * 4096) for _ in range(20)]
        for a in addrs:
            m.vfree(a)
    m.check()
