"""Compaction (mm/compaction.c, v5.11; docs/reference/v5.11-fragmentation.md §3).

Fragmentation index and suitability, deferral, compact_zone's scanners on zones fragmented
by movable page cache or by unmovable pages, async direct compaction's source rule,
kcompactd's wake rule, the slow path's compaction counters and the RFC's order-9 refill.
"""

import pytest

from gpalloc import VM_GROUP_PAGES, Machine
from gpalloc.mm import compaction as c
from gpalloc.mm.gfp import (
    __GFP_NOWARN,
    GFP_GROUPED,
    GFP_KERNEL,
    MIGRATE_UNMOVABLE,
    ZONE_DMA32,
)
from gpalloc.mm.mmzone import get_pageblock_migratetype, zone
from gpalloc.mm.page import OWNER_PAGECACHE, OWNER_SLAB, PageBuddy
from gpalloc.workloads import background as bg

PAGE = 4096


def _bare_zone(free_blocks, marks=(100, 125, 150)):
    """A zone with only nr_free counts (free_area lists empty): for the index formulas."""
    z = zone(0, ZONE_DMA32, 0, 1 << 20)
    z._watermark = list(marks)
    for order, n in free_blocks.items():
        z.nr_free[order] = n
        z.nr_free_pages += n << order
    return z


def _dma32(m):
    return next(z for z in m.k.zones if z.zid == ZONE_DMA32)


def fragmented(unmovable=False, seed=0, patches=None):
    """A 256M machine whose memory is order-3 page cache with every other extent freed.

    Free memory is about half the node, all of it in order-3 holes, so no order-9 block
    is free (fragmentation index ~985).  The LRU is shuffled so reclaim frees scattered
    extents.  With ``unmovable`` the lowest allocated extent of every pageblock is turned
    into a slab page (owner and list change only): no pageblock can ever be emptied.
    ZONE_DMA's few blocks always get one, so that only DMA32 can yield a 2 MiB block.
    """
    m = Machine(node_mem="256M", seed=seed, patches=patches)
    k = m.k
    while bg.add_extent(k, 0, 3):
        pass
    lru = k.lru[0]
    extents = sorted(lru)
    for i, pfn in enumerate(extents):
        if i % 2:
            bg.release_extent(k, 0, pfn)
    kept = sorted(lru)
    dma_end = k.zones[0].zone_end_pfn
    seen = set()
    for pfn in kept:
        if pfn >> 9 not in seen and (unmovable or pfn < dma_end):
            seen.add(pfn >> 9)
            order = lru.remove(pfn)
            k.pages.pfn_to_page(pfn).owner = OWNER_SLAB
            k.kernel_blocks[0].add(pfn, order)
    kept = sorted(lru)
    k.rng.shuffle(kept)
    for pfn in kept:
        lru.make_newest(pfn)
    assert bg.order9_free_blocks(k) == 0
    m.check()
    return m


def _stats(m, *keys):
    st = m.k.stat
    return {key: st[key] for key in keys}


# ---------------------------------------------------------------- fragmentation index

def test_fragmentation_index_examples_from_the_research():
    assert c.fragmentation_index(_bare_zone({0: 1000}), 9) == 998
    assert c.fragmentation_index(_bare_zone({8: 4}), 9) == 250
    assert c.fragmentation_index(_bare_zone({9: 1}), 9) == -1000
    assert c.fragmentation_index(_bare_zone({}), 9) == 0
    assert c.sysctl_extfrag_threshold == 500


def test_extfrag_for_order():
    assert c.extfrag_for_order(_bare_zone({9: 1, 0: 512}), 9) == 50
    assert c.extfrag_for_order(_bare_zone({}), 9) == 0


def test_compaction_suitable_outcomes():
    # plenty free in small blocks: compaction would help (index 998 > 500)
    assert c.compaction_suitable(_bare_zone({0: 4000}), 9, 0, 2) == c.COMPACT_CONTINUE
    # free memory in order-8 blocks: index 475 ≤ 500 → the failure is lack of memory
    z = _bare_zone({8: 40})
    assert c.fragmentation_index(z, 9) == 475
    assert c.compaction_suitable(z, 9, 0, 2) == c.COMPACT_SKIPPED
    # below low + compact_gap(9) = 125 + 1024 order-0 pages: skipped
    assert c.compaction_suitable(_bare_zone({0: 1100}), 9, 0, 2) == c.COMPACT_SKIPPED
    assert c.compaction_suitable(_bare_zone({0: 1200}), 9, 0, 2) == c.COMPACT_CONTINUE
    # not costly: no index, min + compact_gap(2) = 108
    assert c.compaction_suitable(_bare_zone({0: 105}), 2, 0, 2) == c.COMPACT_SKIPPED
    assert c.compaction_suitable(_bare_zone({1: 60}), 2, 0, 2) == c.COMPACT_CONTINUE
    # order -1 (compact_memory) always continues
    assert c.__compaction_suitable(_bare_zone({}), -1, 0, 2, 0) == c.COMPACT_CONTINUE


def test_compaction_suitable_success_when_the_block_is_free():
    m = Machine(node_mem="256M", seed=0)
    assert c.compaction_suitable(_dma32(m), 9, 0, 2) == c.COMPACT_SUCCESS


# ---------------------------------------------------------------- deferral

def test_deferral_skips_seven_times_after_shift_3_then_tries():
    z = _bare_zone({})
    for _ in range(3):
        c.defer_compaction(z, 9)
    assert z.compact_defer_shift == 3
    assert [c.compaction_deferred(z, 9) for _ in range(8)] == [True] * 7 + [False]
    assert c.compaction_deferred(z, 9) is False   # clamped: keeps trying until reset/deferred


def test_defer_shift_caps_at_6_and_restarting():
    z = _bare_zone({})
    for _ in range(10):
        c.defer_compaction(z, 9)
    assert z.compact_defer_shift == c.COMPACT_MAX_DEFER_SHIFT == 6
    assert not c.compaction_restarting(z, 9)
    for _ in range(64):
        c.compaction_deferred(z, 9)
    assert c.compaction_restarting(z, 9)


def test_lower_orders_than_the_failed_one_are_never_deferred():
    z = _bare_zone({})
    c.compaction_defer_reset(z, 9, False)
    assert z.compact_order_failed == 10
    c.defer_compaction(z, 9)
    c.defer_compaction(z, 9)
    assert z.compact_order_failed == 9
    assert c.compaction_deferred(z, 8) is False
    assert c.compaction_deferred(z, 9) is True


def test_success_resets_the_shift():
    z = _bare_zone({})
    c.defer_compaction(z, 9)
    c.defer_compaction(z, 9)
    c.compaction_defer_reset(z, 9, False)
    assert z.compact_defer_shift == 2            # compaction's own success keeps the shift
    c.compaction_defer_reset(z, 9, True)
    assert z.compact_defer_shift == 0 and z.compact_considered == 0
    assert c.compaction_deferred(z, 9) is False


# ---------------------------------------------------------------- compact_zone

def _sync_light(m, zone, order=9, gfp=GFP_GROUPED):
    cc = c.compact_control(order, gfp, c.MIGRATE_SYNC_LIGHT, direct_compaction=True,
                           highest_zoneidx=zone.zid)
    cc.zone = zone
    return c.compact_zone(m.k, cc), cc


def test_compaction_frees_a_2mib_block_in_a_zone_fragmented_by_page_cache():
    m = fragmented()
    z = _dma32(m)
    cached = m.k.lru[0].nr_pages
    types = dict(z.pageblock_mt)
    ret, cc = _sync_light(m, z)
    assert ret == c.COMPACT_SUCCESS
    assert z.nr_free[9] + z.nr_free[10] >= 1
    assert m.k.lru[0].nr_pages == cached             # migrated, not reclaimed
    assert m.k.stat["pgmigrate_success"] > 0
    assert dict(z.pageblock_mt) == types             # no pageblock changed type
    assert not cc.freepages and cc.nr_freepages == 0   # release_freepages() gave back the rest
    m.check()


def test_migrated_extents_are_the_newest_on_the_lru_at_their_new_pfn():
    m = fragmented()
    z = _dma32(m)
    before = set(m.k.lru[0])
    _sync_light(m, z)
    after = list(m.k.lru[0])
    moved = [pfn for pfn in after if pfn not in before]
    assert moved and after[-len(moved):] == moved    # putback_lru_page(): newest
    for pfn in moved:
        page = m.k.pages.peek(pfn)
        assert page.owner == OWNER_PAGECACHE and page._refcount == 1
    m.check()


def test_compaction_cannot_free_a_block_when_every_block_holds_an_unmovable_page():
    m = fragmented(unmovable=True)
    z = _dma32(m)
    slab = sorted(m.k.kernel_blocks[0])
    ret, _cc = _sync_light(m, z)
    assert ret == c.COMPACT_COMPLETE                 # whole zone scanned, nothing to show
    assert z.nr_free[9] + z.nr_free[10] == 0
    assert sorted(m.k.kernel_blocks[0]) == slab      # unmovable pages never move
    assert m.k.stat["pgmigrate_success"] > 0         # but movable pages around them did
    m.check()


def test_targets_are_movable_blocks_only():
    m = fragmented()
    z = _dma32(m)
    top = (z.zone_end_pfn - 1) >> 9
    for b in range(top - 20, top + 1):               # the free scanner's end: Unmovable
        z.pageblock_mt[b] = MIGRATE_UNMOVABLE
    frees = {pfn for pfn in _free_heads(m, z) if pfn >> 9 > top - 21}
    _sync_light(m, z)
    assert not frees - set(_free_heads(m, z)) - _merged_away(m, z, frees)
    m.check()


def _free_heads(m, z):
    return [pfn for lst in (lst for order in z.free_area for lst in order) for pfn in lst]


def _merged_away(m, z, pfns):
    """Free heads that vanished only because they merged into a bigger free block."""
    gone = set()
    for pfn in pfns:
        for o in range(1, 11):
            head = m.k.pages.peek(pfn & ~((1 << o) - 1))
            if PageBuddy(head) and head.private >= o:
                gone.add(pfn)
                break
    return gone


def test_async_unmovable_order9_scans_only_unmovable_blocks():
    m = fragmented()
    z = _dma32(m)
    k = m.k
    blocks = sorted({p >> 9 for p in k.lru[0] if z.zone_start_pfn <= p < z.zone_end_pfn})
    clean, dirty = blocks[10], blocks[12]
    z.pageblock_mt[clean] = z.pageblock_mt[dirty] = MIGRATE_UNMOVABLE
    # one slab page in the "dirty" Unmovable block
    victim = min(p for p in k.lru[0] if p >> 9 == dirty)
    order = k.lru[0].remove(victim)
    k.pages.pfn_to_page(victim).owner = OWNER_SLAB
    k.kernel_blocks[0].add(victim, order)
    movable_elsewhere = {p for p in k.lru[0] if p >> 9 not in (clean, dirty)}
    in_dirty = {p for p in k.lru[0] if p >> 9 == dirty}
    ret, page = c.try_to_compact_pages(k, GFP_GROUPED, 9, 0, [z], 2, c.COMPACT_PRIO_ASYNC)
    assert ret == c.COMPACT_SUCCESS
    assert page is not None and page.pfn == clean << 9      # the emptied block, captured
    assert movable_elsewhere <= set(k.lru[0])               # no Movable block was a source
    assert in_dirty <= set(k.lru[0])                        # skip_on_failure: left whole
    assert get_pageblock_migratetype(z, clean << 9) == MIGRATE_UNMOVABLE
    assert z.compact_defer_shift == 0


def test_async_failure_does_not_defer_but_sync_light_failure_does():
    m = fragmented(unmovable=True)
    z = _dma32(m)
    ret, _ = c.try_to_compact_pages(m.k, GFP_GROUPED, 9, 0, [z], 2, c.COMPACT_PRIO_ASYNC)
    assert ret in (c.COMPACT_COMPLETE, c.COMPACT_PARTIAL_SKIPPED)
    assert z.compact_defer_shift == 0
    ret, _ = c.try_to_compact_pages(m.k, GFP_GROUPED, 9, 0, [z], 2,
                                    c.COMPACT_PRIO_SYNC_LIGHT)
    assert ret == c.COMPACT_COMPLETE
    assert z.compact_defer_shift == 1 and z.compact_order_failed == 0   # nothing succeeded yet
    # the next sync-light attempt is deferred once
    ret, _ = c.try_to_compact_pages(m.k, GFP_GROUPED, 9, 0, [z], 2,
                                    c.COMPACT_PRIO_SYNC_LIGHT)
    assert ret == c.COMPACT_DEFERRED
    m.check()


def test_no_io_gfp_is_skipped():
    m = fragmented()
    ret, page = c.try_to_compact_pages(m.k, GFP_GROUPED & ~0x40, 9, 0, [_dma32(m)], 2,
                                       c.COMPACT_PRIO_SYNC_LIGHT)
    assert ret == c.COMPACT_SKIPPED and page is None


# ---------------------------------------------------------------- kcompactd

def test_kcompactd_not_woken_when_an_order9_block_is_free():
    m = Machine(node_mem="256M", seed=0)
    assert c.wakeup_kcompactd(m.k, 0, 9, 2) is False
    assert m.k.stat["compact_daemon_wake"] == 0


def test_kcompactd_ignores_order0():
    m = fragmented()
    assert c.wakeup_kcompactd(m.k, 0, 0, 2) is False


def test_kcompactd_compacts_a_fragmented_node_until_one_block_is_free():
    m = fragmented()
    assert c.kcompactd_node_suitable(m.k, 0) is False   # max_order is 0 until a wake
    assert c.wakeup_kcompactd(m.k, 0, 9, 2) is True
    st = m.k.stat
    assert st["compact_daemon_wake"] == 1
    assert st["compact_daemon_migrate_scanned"] > 0 and st["compact_daemon_free_scanned"] > 0
    assert st["compact_migrate_scanned"] >= st["compact_daemon_migrate_scanned"]
    assert bg.order9_free_blocks(m.k) >= 1
    assert st["compact_stall"] == 0                  # not a direct compaction
    z = _dma32(m)
    assert c.compaction_suitable(z, 9, 0, z.zid) == c.COMPACT_SUCCESS
    dma = m.k.zones[0]
    assert dma.compact_defer_shift == 1               # DMA (a slab page per block) failed
    # DMA still qualifies, so a second wake runs — DMA is deferred once, DMA32 has its block
    in_dma32 = {p for p in m.k.lru[0] if p >= z.zone_start_pfn}
    assert c.wakeup_kcompactd(m.k, 0, 9, 2) is True
    assert (dma.compact_defer_shift, dma.compact_considered) == (1, 1)
    assert c.wakeup_kcompactd(m.k, 0, 9, 2) is True   # the deferral is used up: DMA again
    assert (dma.compact_defer_shift, dma.compact_considered) == (2, 0)
    assert {p for p in m.k.lru[0] if p >= z.zone_start_pfn} == in_dma32
    assert st["compact_daemon_wake"] == 3
    m.check()


def test_kcompactd_not_woken_when_no_zone_is_suitable():
    m = fragmented()
    for z in m.k.zones:   # too little free memory to compact with: free < low + 1024
        z._watermark = [z.nr_free_pages, z.nr_free_pages, z.nr_free_pages]
    assert c.wakeup_kcompactd(m.k, 0, 9, 2) is False
    assert m.k.stat["compact_daemon_wake"] == 0
    assert c._pgdat(m.k, 0).kcompactd_max_order == 9   # recorded for the next wake


def test_kcompactd_failure_defers():
    m = fragmented(unmovable=True)
    assert c.wakeup_kcompactd(m.k, 0, 9, 2) is True
    assert _dma32(m).compact_defer_shift == 1
    assert c._pgdat(m.k, 0).kcompactd_max_order == 0
    m.check()


# ---------------------------------------------------------------- direct compaction

def test_direct_compaction_counters_on_a_movable_fragmented_zone():
    m = fragmented()
    page = m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, 9)
    assert page is not None and page.order == 9
    st = _stats(m, "compact_stall", "compact_success", "compact_fail", "allocstall")
    # async (Unmovable sources only: none) fails, reclaim, sync-light succeeds
    assert st == {"compact_stall": 2, "compact_success": 1, "compact_fail": 1,
                  "allocstall": 1}
    assert m.k.stat["compact_isolated"] > 0 and m.k.stat["pgmigrate_success"] > 0
    assert _dma32(m).compact_defer_shift == 0
    m.free_pages(page, 9)
    m.check()


def test_order0_never_compacts():
    m = fragmented()
    m.alloc_pages(GFP_KERNEL, 0)
    assert m.k.stat["compact_stall"] == 0


def test_non_costly_unmovable_high_order_compacts_before_reclaim():
    """Order 2, Unmovable, with the zone below min: the initial async compaction runs."""
    m = fragmented()
    page, result = c.__alloc_pages_direct_compact(
        m.k, GFP_KERNEL, 2, 0, [_dma32(m)], 2, MIGRATE_UNMOVABLE, c.INIT_COMPACT_PRIORITY)
    # the zone has order-3 holes: compaction_suitable says SUCCESS, the freelist serves it
    assert page is not None and result == c.COMPACT_SUCCESS
    assert m.k.stat["compact_stall"] == 1 and m.k.stat["compact_success"] == 1


def test_should_compact_retry_rules():
    st = [c.DEF_COMPACT_PRIORITY, 0]
    assert c.should_compact_retry(None, 0, 0, c.COMPACT_SUCCESS, st, [], 2) is False
    # costly: SUCCESS counts retries up to 16 // 4
    st = [c.DEF_COMPACT_PRIORITY, 0]
    assert all(c.should_compact_retry(None, 9, 0, c.COMPACT_SUCCESS, st, [], 2)
               for _ in range(4))
    # retries exhausted at the costly minimum priority (SYNC_LIGHT): give up
    assert c.should_compact_retry(None, 9, 0, c.COMPACT_SUCCESS, st, [], 2) is False
    # non-costly COMPLETE: raise priority to SYNC_FULL once, then give up
    st = [c.DEF_COMPACT_PRIORITY, 3]
    assert c.should_compact_retry(None, 2, 0, c.COMPACT_COMPLETE, st, [], 2) is True
    assert st == [c.COMPACT_PRIO_SYNC_FULL, 0]
    assert c.should_compact_retry(None, 2, 0, c.COMPACT_DEFERRED, st, [], 2) is False


# ---------------------------------------------------------------- the RFC's order-9 refill

def _refill(m):
    addr = m.vmalloc_node_range(PAGE, vm_flags=VM_GROUP_PAGES, node=-1)
    assert addr is not None
    return addr


REFILL_KEYS = ("kswapd_runs", "compact_stall", "compact_fail", "compact_success",
               "allocstall", "grouped_fallback", "grouped_replenish")


def test_rfc_refill_on_a_zone_fragmented_by_unmovable_pages_fails_as_v511_would():
    """§3.8: kswapd ×2, async + sync-light compaction, one direct reclaim, then order 0.

    The third kswapd run is the order-0 fallback's: it steals from a Movable pageblock,
    boost_watermark() raises the zone's marks and rmqueue() wakes kswapd (§2.2)."""
    m = fragmented(unmovable=True, patches=(1, 2))
    m.k.events.clear()
    _refill(m)
    steps = [(ev, f.get("mode")) for ev, f in m.k.events
             if ev in ("compact_zone", "try_to_free_pages") and f.get("zone", "DMA32") == "DMA32"]
    assert steps == [("compact_zone", c.MIGRATE_ASYNC), ("try_to_free_pages", None),
                     ("compact_zone", c.MIGRATE_SYNC_LIGHT)]   # async before reclaim
    assert _stats(m, *REFILL_KEYS) == {
        "kswapd_runs": 3, "compact_stall": 2, "compact_fail": 2, "compact_success": 0,
        "allocstall": 1, "grouped_fallback": 1, "grouped_replenish": 0}
    assert _dma32(m).compact_defer_shift == 1
    # the next miss: async is deferred (considered 1 < 2), sync-light runs and fails again
    _refill(m)   # the order-0 fallback page was not cached: this is a miss too
    st = _stats(m, "compact_stall", "compact_fail", "grouped_fallback")
    assert st == {"compact_stall": 4, "compact_fail": 4, "grouped_fallback": 2}
    assert _dma32(m).compact_defer_shift == 2
    m.check()


def test_rfc_refill_on_a_zone_fragmented_by_page_cache_succeeds_by_compaction():
    m = fragmented(patches=(1, 2))
    _refill(m)
    st = _stats(m, *REFILL_KEYS)
    assert st == {"kswapd_runs": 2, "compact_stall": 2, "compact_fail": 1,
                  "compact_success": 1, "allocstall": 1, "grouped_fallback": 0,
                  "grouped_replenish": 1}
    m.check()


@pytest.mark.parametrize("design", ["6.18"])
def test_compaction_works_under_the_6_18_allocator(design):
    m = Machine(node_mem="256M", seed=0, design=design)
    k = m.k
    while bg.add_extent(k, 0, 3):
        pass
    for i, pfn in enumerate(sorted(k.lru[0])):
        if i % 2:
            bg.release_extent(k, 0, pfn)
    assert c.wakeup_kcompactd(k, 0, 9, 2) is True
    assert bg.order9_free_blocks(k) >= 1
    m.check()
