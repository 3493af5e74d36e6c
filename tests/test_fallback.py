"""v5.11 fallback stealing, mixed pageblocks and watermark boosting (mm/page_alloc.c, vmscan.c).

Kernel semantics from docs/reference/v5.11-fragmentation.md §1–2 (summary table §7):
steal_suitable_fallback()/move_freepages_block() claim a pageblock only when free + alike
pages reach 256, else the block stays mixed; moved free blocks go to the list tail; a pcp
refill caches the requested migratetype; frees go back by pageblock type;
buddy_merge_likely() frees to the tail; boost_watermark() and kswapd's boosted reclaim.

Each test builds the zone state it needs by hand: every free block of the zone is taken
(``_drain``), then single pageblocks are laid out page by page (``_lay``).
"""

import random

import pytest

from gpalloc import GFP_KERNEL, Machine
from gpalloc.mm import page_alloc as pa
from gpalloc.mm.gfp import (
    __GFP_NOWARN,
    GFP_ATOMIC,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    ZONE_DMA32,
)
from gpalloc.mm.mmzone import ZONE_BOOSTED_WATERMARK, get_pageblock_migratetype
from gpalloc.mm.page import MAX_ORDER, OWNER_KERNEL, OWNER_PAGECACHE, OWNER_SLAB, PageBuddy

U, M, R = MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE


def _zone(m, zid=ZONE_DMA32):
    return next(z for z in m.k.zones if z.nid == 0 and z.zid == zid)


def _drain(m, zone):
    """Take every free block off the zone's lists (and pcp lists) as split kernel pages."""
    k = m.k
    pa.drain_all_pages(k)
    pfns = []
    for order in range(MAX_ORDER - 1, -1, -1):
        for mt in (U, M, R):
            while (page := pa.__rmqueue_smallest(k, zone, order, mt)) is not None:
                zone.nr_free_pages -= 1 << order
                pa.prep_new_page(page, order)
                pa.split_page(k, page, order)
                pfns.extend(range(page.pfn, page.pfn + (1 << order)))
    assert zone.nr_free_pages == 0 and not any(zone.nr_free)
    return sorted(pfns)


def _whole_blocks(pfns):
    """Pageblock-aligned starts of pageblocks whose 512 pages are all in pfns."""
    have = set(pfns)
    return [p for p in pfns if p % 512 == 0 and all(p + i in have for i in range(512))]


def _lay(m, start, roles):
    """Give page start+i the role roles[i]: F free (order 0, via the buddy), L page cache
    on the LRU, S an unmovable slab block, K left as a kernel page."""
    k = m.k
    for i, role in enumerate(roles):
        page = k.pages.pfn_to_page(start + i)
        assert page._refcount == 1 and page.owner == OWNER_KERNEL
        if role == "L":
            page.owner = OWNER_PAGECACHE
            k.lru[page.nid].add(page.pfn, 0)
        elif role == "S":
            page.owner = OWNER_SLAB
            k.kernel_blocks[page.nid].add(page.pfn, 0)
    for i, role in enumerate(roles):
        if role == "F":
            page = k.pages.pfn_to_page(start + i)
            page._refcount = 0
            pa.__free_pages_ok(k, page, 0)


def _scattered(n_free, n_lru, n_slab):
    """One pageblock: free pages at even offsets (no two buddies free), then LRU, slab."""
    assert n_free + n_lru + n_slab == 512 and n_free <= 256
    roles = ["?"] * 512
    for i in range(n_free):
        roles[2 * i] = "F"
    rest = [i for i in range(512) if roles[i] == "?"]
    for j, i in enumerate(rest):
        roles[i] = "L" if j < n_lru else "S"
    return roles


def _take(m, zone, mt, alloc_flags=0, order=0):
    """__rmqueue() + the accounting rmqueue() and prep_new_page() do."""
    page = pa.__rmqueue(m.k, zone, order, mt, alloc_flags)
    zone.nr_free_pages -= 1 << order
    pa.prep_new_page(page, order)
    return page


def _on_list(zone, pfn, order, mt):
    return pfn in zone.free_area[order][mt]


@pytest.fixture
def m():
    return Machine(node_mem="512M", seed=0)


def _one_block(m, roles, block_mt=M):
    zone = _zone(m)
    pfns = _drain(m, zone)
    start = _whole_blocks(pfns)[0]
    zone.pageblock_mt[start >> 9] = block_mt
    _lay(m, start, roles)
    return zone, start


# ---------------------------------------------------------------- claim or mixed


def test_mostly_lru_block_is_not_claimed_and_stays_mixed(m):
    zone, start = _one_block(m, _scattered(100, 300, 112))
    boost = zone.watermark_boost
    page = _take(m, zone, U, pa.ALLOC_KSWAPD)
    # alike = 512 - (100 free + 300 LRU) = 112; 100 + 112 < 256: not claimed
    assert get_pageblock_migratetype(zone, start) == M
    assert page.pfn == start                      # head of the moved pages = lowest pfn
    assert len(zone.free_area[0][U]) == 99 and not zone.free_area[0][M]
    assert zone.watermark_boost == boost + 512
    assert ZONE_BOOSTED_WATERMARK in zone.flags
    m.check()


def test_mostly_unmovable_block_is_claimed(m):
    zone, start = _one_block(m, _scattered(100, 200, 212))
    _take(m, zone, U)
    # alike = 512 - 300 = 212; 100 + 212 >= 256: claimed
    assert get_pageblock_migratetype(zone, start) == U
    assert len(zone.free_area[0][U]) == 99
    assert ZONE_BOOSTED_WATERMARK not in zone.flags     # no ALLOC_KSWAPD: boost, no flag
    assert zone.watermark_boost == 512
    m.check()


def test_movable_request_claims_unmovable_block_by_lru_count(m):
    # 100 free (one order-4 block and 84 scattered pages), 200 LRU, 212 slab, Unmovable block
    roles = ["F"] * 16 + ["?"] * 496
    for i in range(84):
        roles[16 + 2 * i] = "F"
    rest = [i for i in range(512) if roles[i] == "?"]
    for j, i in enumerate(rest):
        roles[i] = "L" if j < 200 else "S"
    zone, start = _one_block(m, roles, block_mt=U)
    assert zone.nr_free[4] == 1
    _take(m, zone, M)     # steals the order-4 block: can_steal at order 4
    assert get_pageblock_migratetype(zone, start) == M   # alike = 200 LRU: 300 >= 256
    m.check()


def test_movable_request_below_order_4_moves_only_the_block(m):
    zone, start = _one_block(m, _scattered(100, 200, 212), block_mt=U)
    page = _take(m, zone, M)
    assert get_pageblock_migratetype(zone, start) == U
    assert page.pfn == start + 198           # the list head (freed last): only it moved
    assert len(zone.free_area[0][U]) == 99 and not zone.free_area[0][M]
    assert zone.watermark_boost == 512       # a fragmenting fallback boosts anyway


def test_order_10_steal_retypes_both_pageblocks_without_boost():
    m = Machine(node_mem="512M", seed=0)
    zone = _zone(m)
    assert not any(zone.free_area[o][U] for o in range(MAX_ORDER))
    page = _take(m, zone, U, pa.ALLOC_KSWAPD)
    base = page.pfn & ~1023
    assert get_pageblock_migratetype(zone, base) == U
    assert get_pageblock_migratetype(zone, base + 512) == U
    assert zone.watermark_boost == 0 and not zone.flags
    assert _on_list(zone, base + 512, 9, U)          # the upper half, on the Unmovable list
    ev = [f for e, f in m.k.events if e == "mm_page_alloc_extfrag"][-1]
    assert (ev["fallback_order"], ev["alloc_migratetype"], ev["fallback_migratetype"],
            ev["fragmenting"], ev["change_ownership"]) == (10, U, M, 0, 1)


def test_extfrag_tracepoint_of_a_mixed_steal(m):
    zone, start = _one_block(m, _scattered(100, 300, 112))
    _take(m, zone, U)
    ev = [f for e, f in m.k.events if e == "mm_page_alloc_extfrag"][-1]
    assert ev["pfn"] == start + 198          # the Movable list's head (freed last)
    assert (ev["alloc_order"], ev["fallback_order"], ev["fragmenting"],
            ev["change_ownership"]) == (0, 0, 1, 0)


def test_moved_free_blocks_go_to_the_list_tail(m):
    zone, start = _one_block(m, _scattered(100, 300, 112))
    # an Unmovable order-0 block already on the list: the moved pages must go behind it
    zone2_pfns = [p for p in range(start + 512, start + 1024)
                  if m.k.pages.pfn_to_page(p).owner == OWNER_KERNEL]
    keep = zone2_pfns[1]                     # an odd-offset page: its buddy stays allocated
    zone.pageblock_mt[keep >> 9] = U
    page = m.k.pages.pfn_to_page(keep)
    page._refcount = 0
    pa.__free_pages_ok(m.k, page, 0)
    assert next(reversed(zone.free_area[0][U])) == keep
    pa.steal_suitable_fallback(m.k, zone, m.k.pages.pfn_to_page(start), 0, U, True, 0)
    lst = list(zone.free_area[0][U])
    assert lst[-1] == keep                   # still the head
    assert lst[0] == start + 198             # the last page moved is the tail


def test_steal_from_a_pageblock_past_the_zone_end_moves_one_block():
    m = Machine(node_mem="512M", seed=0)
    zone = _zone(m)
    pfns = _drain(m, zone)
    start = _whole_blocks(pfns)[0]
    _lay(m, start, _scattered(100, 300, 112))
    end = zone.zone_end_pfn
    zone.zone_end_pfn = start + 256          # the pageblock now straddles the zone's end
    try:
        free, movable = pa.move_freepages_block(m.k, zone, start, U)
        assert (free, movable) == (0, 0)
        pa.steal_suitable_fallback(m.k, zone, m.k.pages.pfn_to_page(start), 0, U, True, 0)
        assert _on_list(zone, start, 0, U) and len(zone.free_area[0][U]) == 1
        assert get_pageblock_migratetype(zone, start) == M
    finally:
        zone.zone_end_pfn = end


def test_move_freepages_block_counts_free_and_lru_pages(m):
    zone, start = _one_block(m, _scattered(100, 300, 112))
    assert pa.move_freepages_block(m.k, zone, start + 7, R) == (100, 300)
    assert len(zone.free_area[0][R]) == 100


def test_unmovable_request_prefers_reclaimable_blocks(m):
    zone = _zone(m)
    pfns = _drain(m, zone)
    a, b = _whole_blocks(pfns)[:2]
    zone.pageblock_mt[a >> 9] = M
    zone.pageblock_mt[b >> 9] = R
    _lay(m, a, _scattered(100, 300, 112))
    _lay(m, b, _scattered(100, 300, 112))
    page = _take(m, zone, U)
    assert page.pfn >> 9 == b >> 9


# ---------------------------------------------------------------- pcp types, freeing


def test_drained_refill_page_lands_on_the_requested_list(m):
    zone, start = _one_block(m, _scattered(100, 300, 112))
    k = m.k
    page = pa.rmqueue_pcplist(k, zone, U, 0)     # refill 63 pages, take one
    assert page is not None
    assert get_pageblock_migratetype(zone, start) == M
    pcp = pa.get_pcp(k, zone)
    refilled = list(pcp.lists[U])
    assert len(refilled) == pcp.batch - 1
    assert all(k.pages.pfn_to_page(p).pcp_mt == U for p in refilled)
    pa.drain_pages_zone(k, zone, k.cpu)
    for pfn in refilled:
        assert _on_list(zone, pfn, 0, U)         # v5.11: back by the cached (requested) type
    assert not zone.free_area[0][M]


def test_stolen_page_freed_goes_to_the_movable_list(m):
    zone, start = _one_block(m, _scattered(100, 300, 112))
    k = m.k
    page = _take(m, zone, U)
    pa.free_unref_page(k, page)                  # free_unref_page_prepare(): pageblock type
    pcp = pa.get_pcp(k, zone)
    assert page.pfn in pcp.lists[M] and page.pcp_mt == M
    pa.drain_pages_zone(k, zone, k.cpu)
    assert _on_list(zone, page.pfn, 0, M)


def test_mixed_pageblocks_view(m):
    zone, start = _one_block(m, _scattered(100, 412, 0))
    key = (0, zone.name)
    # the drained kernel pages make other pageblocks mixed already; count relative
    before = m.mixed_pageblocks()[key]["Movable"]
    _take(m, zone, U)
    assert get_pageblock_migratetype(zone, start) == M      # 100 + 0 alike < 256
    assert m.mixed_pageblocks()[key]["Movable"] == before + 1
    assert m.pagetypeinfo()[key]["Movable"] >= 1            # the block still counts Movable


# ---------------------------------------------------------------- buddy_merge_likely


def _three_pages(m):
    zone = _zone(m)
    pfns = _drain(m, zone)
    return zone, _whole_blocks(pfns)[0]


def test_merge_likely_frees_to_the_tail(m):
    zone, start = _three_pages(m)
    k = m.k
    for pfn in (start + 2, start + 3, start + 8):   # start+2..3 merge into an order-1 block
        page = k.pages.pfn_to_page(pfn)
        page._refcount = 0
        pa.__free_pages_ok(k, page, 0)
    assert _on_list(zone, start + 2, 1, M)
    page = k.pages.pfn_to_page(start)
    page._refcount = 0
    pa.__free_pages_ok(k, page, 0)               # start+1 allocated: no merge
    lst = list(zone.free_area[0][M])
    assert lst[0] == start                       # tail: its order-1 buddy is free
    assert lst[-1] == start + 8                  # head


def test_no_merge_likely_frees_to_the_head(m):
    zone, start = _three_pages(m)
    k = m.k
    for pfn in (start + 8, start):
        page = k.pages.pfn_to_page(pfn)
        page._refcount = 0
        pa.__free_pages_ok(k, page, 0)
    assert next(reversed(zone.free_area[0][M])) == start      # head
    assert pa.buddy_merge_likely(k, zone, start, start + 1, 0) is False


def test_merge_likely_never_above_order_8(m):
    zone, start = _three_pages(m)
    assert pa.buddy_merge_likely(m.k, zone, start, start + 512, 9) is False


def test_boot_frees_to_the_tail():
    m = Machine(node_mem="256M", seed=0)
    for z in m.k.zones:
        for order in range(MAX_ORDER - 1):
            lst = list(z.free_area[order][M])
            assert lst == sorted(lst)            # ascending: the lowest block is the tail


# ---------------------------------------------------------------- watermark boosting


def test_boost_grows_by_a_pageblock_up_to_its_cap(m):
    zone = _zone(m)
    cap = max(512, zone._watermark[2] * pa.watermark_boost_factor // 10000)
    assert pa.boost_watermark(zone) and zone.watermark_boost == 512
    assert pa.boost_watermark(zone) and zone.watermark_boost == min(1024, cap)
    for _ in range(cap // 512 + 2):
        pa.boost_watermark(zone)
    assert zone.watermark_boost == cap


def test_no_boost_with_factor_0(m, monkeypatch):
    monkeypatch.setattr(pa, "watermark_boost_factor", 0)
    zone = _zone(m)
    assert not pa.boost_watermark(zone) and zone.watermark_boost == 0


def test_no_boost_in_a_zone_under_four_pageblocks(m):
    zone = _zone(m)
    zone.managed_pages = 2047
    assert not pa.boost_watermark(zone) and zone.watermark_boost == 0
    zone.managed_pages = 2048
    assert pa.boost_watermark(zone)


def test_boost_raises_every_watermark(m):
    zone = _zone(m)
    low = zone.low_wmark_pages()
    pa.boost_watermark(zone)
    assert zone.low_wmark_pages() == low + 512
    assert zone.min_wmark_pages() == zone._watermark[0] + 512
    assert zone.high_wmark_pages() == zone._watermark[2] + 512
    free = zone._watermark[1] + 100   # between low and low + boost
    assert pa.zone_watermark_ok(zone, 0, zone._watermark[1], 0, 0, free)
    assert not pa.zone_watermark_ok(zone, 0, pa._mark(zone, pa.ALLOC_WMARK_LOW), 0, 0, free)


def _half_lru_zone(m):
    """Every whole pageblock: low half page cache on the LRU, high half free (order 8)."""
    zone = _zone(m)
    pfns = _drain(m, zone)
    for start in _whole_blocks(pfns):
        _lay(m, start, ["L"] * 256 + ["F"] * 256)
    return zone


def test_one_fragmenting_steal_makes_kswapd_reclaim_the_boost(m):
    k = m.k
    zone = _half_lru_zone(m)
    assert zone.nr_free_pages > zone.high_wmark_pages() + 512     # balanced, only boosted
    before = dict(k.stat)
    page = _take(m, zone, U, pa.ALLOC_KSWAPD)
    assert zone.watermark_boost == 512 and ZONE_BOOSTED_WATERMARK in zone.flags
    assert get_pageblock_migratetype(zone, page.pfn) == U         # 256 free + 0 alike
    lru = k.lru[0].nr_pages
    nxt = pa.rmqueue(k, zone, 0, GFP_KERNEL, pa.ALLOC_WMARK_LOW, M)     # the next rmqueue
    pa.prep_new_page(nxt, 0)
    stolen = k.stat["pgsteal_kswapd"] - before.get("pgsteal_kswapd", 0)
    assert 512 <= stolen <= 512 + (lru >> 10)    # at most one priority-10 pass over
    assert k.stat["pgscan_kswapd"] - before.get("pgscan_kswapd", 0) >= stolen
    assert k.stat["pageoutrun"] - before.get("pageoutrun", 0) == 1
    assert zone.watermark_boost == 0 and not zone.flags
    m.check()


def test_boosted_zone_without_reclaimable_memory_drops_the_boost(m):
    zone = _zone(m)
    pa.boost_watermark(zone)
    zone.flags.add(ZONE_BOOSTED_WATERMARK)
    pa.prep_new_page(pa.rmqueue(m.k, zone, 0, GFP_KERNEL, pa.ALLOC_WMARK_LOW, M), 0)
    assert zone.watermark_boost == 0 and m.k.stat["pgsteal_kswapd"] == 0


def test_fragmenting_allocation_end_to_end(m):
    """alloc_page(GFP_KERNEL) on a fragmented zone: NOFRAGMENT fails, the steal boosts,
    rmqueue wakes kswapd, the boost is reclaimed and gone."""
    k = m.k
    zone = _half_lru_zone(m)
    for z in m.k.zones:
        if z is not zone:
            _drain(m, z)
    page = m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, 0)
    assert page is not None and k.zone_of(page.pfn) is zone
    assert k.stat["pgalloc_fallback"] >= 1
    assert k.stat["pgsteal_kswapd"] >= 512
    assert zone.watermark_boost == 0 and not zone.flags
    assert PageBuddy(k.pages.pfn_to_page(page.pfn)) is False
    m.check()


# ---------------------------------------------------------------- a random sequence


@pytest.mark.parametrize("seed", [0, 1])
def test_random_unmovable_churn_on_a_full_machine_keeps_invariants(seed):
    """Unmovable allocations and frees on a machine filled with page cache: fragmenting
    steals boost, kswapd reclaims the boost, and Machine.check() holds throughout."""
    m = Machine(node_mem="256M", seed=seed)
    m.set_memory_pressure(0.9)
    k, rng, held = m.k, random.Random(seed), []
    for step in range(3000):
        if held and rng.random() < 0.45:
            page, order = held.pop(rng.randrange(len(held)))
            m.free_pages(page, order)
        else:
            order = rng.choice((0, 0, 0, 1, 2, 3))
            page = m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, order)
            if page is not None:
                held.append((page, order))
        if step % 500 == 0:
            m.check()
        for z in k.zones:
            cap = max(512, z._watermark[2] * pa.watermark_boost_factor // 10000)
            assert 0 <= z.watermark_boost <= cap
    m.check()
    assert k.stat["pgsteal_kswapd"] > 0 and k.stat["pageoutrun"] > 0
    assert sum(c["Movable"] for c in m.mixed_pageblocks().values()) > 0


def test_atomic_order0_is_checked_against_the_unboosted_min(m):
    zone = _zone(m)
    pa.boost_watermark(zone)
    free = zone._watermark[0] + 100              # above min, below min + boost
    zone_free, zone.nr_free_pages = zone.nr_free_pages, free
    try:
        flags = pa.ALLOC_WMARK_MIN
        assert not pa.zone_watermark_ok(zone, 0, pa._mark(zone, flags), 0, flags)
        assert pa._atomic_unboosted_ok(zone, 0, GFP_ATOMIC, flags, 0)
        assert not pa._atomic_unboosted_ok(zone, 0, GFP_KERNEL, flags, 0)
        assert not pa._atomic_unboosted_ok(zone, 1, GFP_ATOMIC, flags, 0)
        assert not pa._atomic_unboosted_ok(zone, 0, GFP_ATOMIC, pa.ALLOC_WMARK_LOW, 0)
    finally:
        zone.nr_free_pages = zone_free
