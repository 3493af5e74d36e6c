"""Shrinkers (mm/vmscan.c v5.11, spec §6) and the RFC shrinker's nr_scanned quirk (§1.7)."""

import pytest

from gpalloc import GFP_KERNEL, VM_GROUP_PAGES, Machine
from gpalloc.designs.rfc import grouped_cache_pages
from gpalloc.mm import vmscan as vs
from gpalloc.mm.gfp import __GFP_DMA, GFP_ATOMIC, GFP_NOFS, GFP_NOIO, GFP_NOWAIT
from gpalloc.mm.page_alloc import drain_all_pages

DEF_PRIORITY = 12


class FakeCache:
    """A cache of ``pool`` objects: count reports F, scan isolates from the pool."""

    def __init__(self, k, freeable, pool=None, numa=True, stop=False, batch=0, seeks=2):
        self.k = k
        self.freeable = freeable
        self.pool = freeable if pool is None else pool
        self.stop = stop
        self.calls = []           # nr_to_scan of each scan_objects call
        self.counts = 0
        self.s = vs.shrinker(self.count, self.scan, seeks=seeks, batch=batch,
                             flags=vs.SHRINKER_NUMA_AWARE if numa else 0, name="fake")

    def count(self, s, sc):
        self.counts += 1
        return self.freeable

    def scan(self, s, sc):
        self.calls.append(sc.nr_to_scan)
        assert sc.nr_scanned == sc.nr_to_scan      # do_shrink_slab presets nr_scanned
        if self.stop:
            return vs.SHRINK_STOP
        n = min(sc.nr_to_scan, self.pool)
        self.pool -= n
        return n


@pytest.fixture
def k():
    return Machine(nodes=2, node_mem="256M").k


def _fake(k, F, **kw):
    f = FakeCache(k, F, **kw)
    assert vs.register_shrinker(k, f.s) == 0
    return f


def _run(k, f, priority, nid=0, gfp=GFP_KERNEL):
    sc = vs.shrink_control(gfp_mask=gfp, nid=nid)
    return vs.do_shrink_slab(k, sc, f.s, priority)


# spec §6.2 worked table: delta = (F >> priority) * 4 / DEFAULT_SEEKS
TABLE = {
    511: {12: 0, 10: 0, 8: 2, 6: 14, 4: 62, 2: 254, 1: 510, 0: 1022},
    2000: {12: 0, 10: 2, 8: 14, 6: 62, 4: 250, 2: 1000, 1: 2000, 0: 4000},
    10000: {12: 4, 10: 18, 8: 78, 6: 312, 4: 1250, 2: 5000, 1: 10000, 0: 20000},
}
CELLS = [(F, p, d) for F, row in TABLE.items() for p, d in row.items()]


@pytest.mark.parametrize("F,priority,delta", CELLS)
def test_worked_table_delta(k, F, priority, delta):
    """Nothing deferred: work scanned now + work deferred == delta of the table."""
    f = _fake(k, F)
    freed = _run(k, f, priority)
    scanned = sum(f.calls)
    assert scanned + f.s.nr_deferred[0] == delta
    # batches of SHRINK_BATCH (128); the loop stops once < 128 and < F remain
    assert all(c == vs.SHRINK_BATCH for c in f.calls)
    assert len(f.calls) == delta // 128
    assert f.s.nr_deferred[0] == delta % 128
    assert freed == min(scanned, F)
    event, fields = k.events[-1]
    assert event == "do_shrink_slab" and fields["delta"] == delta


def test_shrink_batch_and_seeks_constants():
    assert vs.SHRINK_BATCH == 128
    assert vs.DEFAULT_SEEKS == 2
    assert vs.DEF_PRIORITY == 12
    assert vs.SHRINK_STOP == (1 << 64) - 1
    assert vs.SHRINK_EMPTY == (1 << 64) - 2


def test_small_deltas_are_deferred_and_accumulate(k):
    f = _fake(k, 511)
    for i in range(1, 6):
        _run(k, f, 8)                         # delta 2 each time, nothing scanned
        assert f.calls == []
        assert f.s.nr_deferred[0] == 2 * i


def test_deferred_work_is_taken_and_spent(k):
    f = _fake(k, 2000)
    f.s.nr_deferred[0] = 120
    _run(k, f, 6)                             # 120 + delta 62 = 182 → one batch of 128
    assert f.calls == [128]
    assert f.s.nr_deferred[0] == 182 - 128


def test_anti_windup_clamp(k):
    # delta (2) < F/4: total_scan is clamped to F/2 = 255, but the unclamped total is deferred
    f = _fake(k, 511)
    f.s.nr_deferred[0] = 1000
    _run(k, f, 8)
    assert f.calls == [128]                   # 255 → one batch, 127 left < 128 and < F
    assert f.s.nr_deferred[0] == 1002 - 128


def test_no_clamp_when_delta_is_large(k):
    # delta (510) >= F/4: no windup clamp; the 2×F cap (1022) applies instead
    f = _fake(k, 511)
    f.s.nr_deferred[0] = 1000
    _run(k, f, 1)
    assert f.calls == [128] * 7               # 1022 → 7 batches, 126 left
    assert f.s.nr_deferred[0] == 1510 - 7 * 128


def test_cap_at_twice_freeable(k):
    f = _fake(k, 300)
    f.s.nr_deferred[0] = 5000
    _run(k, f, 0)                             # 5000 + 600 → cap 600
    assert sum(f.calls) == 512                # 4 batches, 88 left < 128 and < 300
    assert f.calls == [128] * 4
    assert f.s.nr_deferred[0] == 5600 - 512


def test_loop_runs_while_total_scan_at_least_freeable(k):
    # F < batch: a total_scan ≥ F still scans (one call of total_scan objects)
    f = _fake(k, 50)
    _run(k, f, 0)                             # delta = 100 = cap 2F
    assert f.calls == [100]
    assert f.s.nr_deferred[0] == 0


def test_custom_batch(k):
    f = _fake(k, 2000, batch=32)
    _run(k, f, 4)                             # delta 250 → 7 batches of 32, 26 left
    assert f.calls == [32] * 7
    assert f.s.nr_deferred[0] == 250 - 224


def test_seeks_zero_means_half(k):
    f = _fake(k, 1000, seeks=0)
    _run(k, f, DEF_PRIORITY)                  # delta = F/2 = 500
    assert sum(f.calls) + f.s.nr_deferred[0] == 500


def test_shrink_stop_ends_the_loop_and_defers_everything(k):
    f = _fake(k, 511, stop=True)
    freed = _run(k, f, 0)
    assert f.calls == [128]                   # first call says SHRINK_STOP
    assert freed == 0
    assert f.s.nr_deferred[0] == 1022        # nothing scanned: all work deferred
    assert k.stat["shrinker_stop"] == 1


def test_shrink_empty_and_zero_skip_the_scan(k):
    for value in (vs.SHRINK_EMPTY, 0):
        f = _fake(k, value)
        f.s.nr_deferred[0] = 77
        assert _run(k, f, 0) == value
        assert f.calls == []
        assert f.s.nr_deferred[0] == 77      # deferred work not taken


def test_shrink_slab_counts_shrink_empty_as_zero(k):
    empty = _fake(k, vs.SHRINK_EMPTY)
    _fake(k, 300)
    freed = vs.shrink_slab(k, GFP_KERNEL, 0, None, 0)
    assert freed == 300
    assert empty.calls == []


def test_numa_aware_defers_per_node(k):
    f = _fake(k, 511)
    assert len(f.s.nr_deferred) == 2
    _run(k, f, 8, nid=1)
    assert f.s.nr_deferred == [0, 2]
    _run(k, f, 8, nid=0)
    assert f.s.nr_deferred == [2, 2]


def test_numa_unaware_uses_slot_zero(k):
    f = _fake(k, 511, numa=False)
    assert len(f.s.nr_deferred) == 1
    _run(k, f, 8, nid=1)
    _run(k, f, 8, nid=0)
    assert f.s.nr_deferred == [4]


def test_shrink_slab_skips_non_memcg_shrinkers_for_memcg_reclaim(k):
    f = _fake(k, 300)
    assert vs.shrink_slab(k, GFP_KERNEL, 0, "some-memcg", 0) == 0
    assert f.counts == 0
    assert vs.shrink_slab(k, GFP_KERNEL, 0, None, 0) == 300


def test_unregister_shrinker(k):
    f = _fake(k, 300)
    vs.unregister_shrinker(k, f.s)
    assert f.s not in k.shrinker_list
    assert vs.shrink_slab(k, GFP_KERNEL, 0, None, 0) == 0
    assert f.counts == 0


# ---------------------------------------------------------------- the RFC shrinker


def _grouped_machine(quirk):
    m = Machine(patches=(1, 2), nr_scanned_quirk=quirk)
    addr = m.vmalloc_node_range(4096, vm_flags=VM_GROUP_PAGES)
    assert addr is not None
    assert grouped_cache_pages(m.k, 0) == 511      # one replenish: pages 1..511 cached
    s = m.k.design.shrinker
    rec = []
    orig = s.scan_objects

    def scan(s_, sc):
        n = sc.nr_to_scan
        ret = orig(s_, sc)
        rec.append((n, ret, sc.nr_scanned))
        return ret

    s.scan_objects = scan
    return m, s, rec


def test_rfc_shrinker_registration():
    m = Machine(patches=(1, 2))
    g = m.k.design
    assert g.grouped_page_en
    assert g.shrinker in m.k.shrinker_list
    assert g.shrinker.seeks == vs.DEFAULT_SEEKS
    assert g.shrinker.batch == 0
    assert g.shrinker.flags == vs.SHRINKER_NUMA_AWARE
    assert len(g.shrinker.nr_deferred) == 1


def test_priority0_quirk_on():
    """Spec §6.2: batches 128,128,128,127 with nr_scanned 256,256,256,255; 4 calls."""
    m, s, rec = _grouped_machine(True)
    sc = vs.shrink_control(gfp_mask=GFP_KERNEL, nid=0)
    freed = vs.do_shrink_slab(m.k, sc, s, 0)
    assert [r[1] for r in rec] == [128, 128, 128, 127]
    assert [r[2] for r in rec] == [256, 256, 256, 255]
    assert [r[0] for r in rec] == [128] * 4
    assert freed == 511
    assert grouped_cache_pages(m.k) == 0
    assert s.nr_deferred == [0]
    m.check()


def test_priority0_quirk_off():
    """Quirk off: 4 productive calls, then empty ones until total_scan < 128.

    Spec §6.2 says "≈8 calls"; v5.11's arithmetic gives 1022 → 7 batches of 128 (126 left).
    """
    m, s, rec = _grouped_machine(False)
    sc = vs.shrink_control(gfp_mask=GFP_KERNEL, nid=0)
    freed = vs.do_shrink_slab(m.k, sc, s, 0)
    assert [r[1] for r in rec] == [128, 128, 128, 127, 0, 0, 0]
    assert all(r[2] == 128 for r in rec)
    assert 7 <= len(rec) <= 8
    assert freed == 511
    assert grouped_cache_pages(m.k) == 0
    assert s.nr_deferred == [1022 - 7 * 128]
    m.check()


def test_rfc_shrinker_not_scanned_at_def_priority():
    m, s, rec = _grouped_machine(True)
    assert m.shrink_slab(0, DEF_PRIORITY) == 0
    assert rec == []
    assert grouped_cache_pages(m.k) == 511


@pytest.mark.parametrize("gfp", [GFP_NOIO, GFP_NOFS, GFP_NOWAIT, GFP_ATOMIC])
def test_rfc_scan_gfp_test_is_an_intersection(gfp):
    # any shared bit with GFP_GROUPED passes (spec §1.7 quirk)
    m, s, rec = _grouped_machine(True)
    sc = vs.shrink_control(gfp_mask=gfp, nid=0)
    assert vs.do_shrink_slab(m.k, sc, s, 0) == 511


def test_rfc_scan_stops_without_shared_bits():
    m, s, rec = _grouped_machine(True)
    sc = vs.shrink_control(gfp_mask=__GFP_DMA, nid=0)
    assert vs.do_shrink_slab(m.k, sc, s, 0) == 0
    assert [r[1] for r in rec] == [vs.SHRINK_STOP]
    assert grouped_cache_pages(m.k) == 511
    assert s.nr_deferred == [1022]


def test_register_shrinker_failure_leaves_grouping_disabled():
    m = Machine(patches=(1, 2), faults=("register_shrinker",))
    g = m.k.design
    assert g.grouped_page_en is False
    assert g.grouped_pages_lru is None            # list_lru_destroy()
    assert m.k.shrinker_list == []
    free = m.meminfo()["MemFree"]
    addr = m.vmalloc_node_range(4096, vm_flags=VM_GROUP_PAGES)
    assert addr is not None                       # VM_GROUP_PAGES is ignored: ordinary page
    st = m.stats()
    assert st["grouped_replenish"] == 0 and st["grouped_hits"] == 0
    assert st["grouped_cache_pages"] == 0
    m.vfree(addr)
    assert m.stats()["grouped_cache_pages"] == 0
    drain_all_pages(m.k)
    assert m.meminfo()["MemFree"] == free         # the page went back to the buddy
    m.check()


def test_register_shrinker_failure_with_patch_3():
    m = Machine(patches=(1, 2, 3), faults=("register_shrinker",))
    addr = m.module_alloc(8192)
    assert addr is not None
    assert m.stats()["grouped_replenish"] == 0
    m.module_memfree(addr)
    assert m.stats()["grouped_cache_pages"] == 0
    m.check()


def test_register_shrinker_returns_enomem_under_fault():
    k = Machine(faults=("register_shrinker",)).k
    f = FakeCache(k, 10)
    assert vs.register_shrinker(k, f.s) == -vs.ENOMEM
    assert f.s not in k.shrinker_list


def test_drop_caches_2_empties_the_grouped_cache_on_every_node():
    m = Machine(nodes=2, patches=(1, 2, 3))
    a = m.vmalloc_node_range(4096, vm_flags=VM_GROUP_PAGES, node=0)
    b = m.vmalloc_node_range(4096, vm_flags=VM_GROUP_PAGES, node=1)
    per_node = m.stats()["grouped_cache_pages_per_node"]
    assert per_node == [511, 511]
    dmap = {key: v for key, v in m.meminfo().items() if key.startswith("DirectMap")}
    m.drop_caches(2)
    st = m.stats()
    assert st["grouped_cache_pages_per_node"] == [0, 0]
    assert st["shrinker_freed"] == 1022
    # spec S7: cache emptied, direct map untouched
    assert {key: v for key, v in m.meminfo().items() if key.startswith("DirectMap")} == dmap
    # the live areas are untouched
    assert m.find_vm_area(a) is not None and m.find_vm_area(b) is not None
    m.check()


def test_drop_caches_1_leaves_the_grouped_cache():
    m = Machine(patches=(1, 2, 3))
    m.module_alloc(4096)
    m.drop_caches(1)
    assert m.stats()["grouped_cache_pages"] == 511


def test_drop_slab_repeats_until_a_pass_frees_ten_or_fewer(k):
    class Shrinking(FakeCache):
        def count(self, s, sc):
            self.counts += 1
            return self.pool

    f = Shrinking(k, 1000, numa=False)
    vs.register_shrinker(k, f.s)
    vs.drop_slab_node(k, 0)
    assert f.pool == 0
    assert f.counts == 2                      # second pass frees 0 ≤ 10 → stop


@pytest.mark.parametrize("mode", [0, 4, "2"])
def test_drop_caches_bad_mode(mode):
    m = Machine()
    with pytest.raises(ValueError, match="mode"):
        m.drop_caches(mode)
