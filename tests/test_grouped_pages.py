"""RFC 2/3 "vmalloc: Support grouped page allocations" (spec §1.3–1.7, §6): the VM_GROUP_PAGES
page cache — GFP check, LIFO reuse, replenish, NUMA round robin, free path, shrinker, storage
variants and what goes wrong with an in-page list_head."""

import pytest

from gpalloc import (
    GFP_ATOMIC,
    GFP_GROUPED,
    GFP_KERNEL,
    GFP_NOFS,
    GFP_NOIO,
    GFP_NOWAIT,
    VM_GROUP_PAGES,
    InvariantError,
    KernelBUG,
    Machine,
)
from gpalloc.arch.x86.pgtable_types import _PAGE_PRESENT, _PAGE_RW, PG_LEVEL_4K
from gpalloc.mm.compaction import COMPACT_MAX_DEFER_SHIFT, defer_compaction
from gpalloc.mm.gfp import __GFP_HIGHMEM, __GFP_MOVABLE, __GFP_ZERO
from gpalloc.mm.page_alloc import drain_all_pages
from gpalloc.mm.vmalloc import busy_areas

PAGE = 4096
DEF_PRIORITY = 12


def grouped(m, npages=1, node=-1, **kw):
    addr = m.vmalloc_node_range(npages * PAGE, vm_flags=VM_GROUP_PAGES, node=node, **kw)
    assert addr is not None
    return addr


def pfns(m, addr):
    return [p.pfn for p in m.find_vm_area(addr).pages]


def nids(m, addr):
    return [p.nid for p in m.find_vm_area(addr).pages]


def dmap(m):
    return {k: v for k, v in m.meminfo().items() if k.startswith("DirectMap")}


def cache(m):
    return m.stats().get("grouped_cache_pages", 0)   # no cache (before patch 2): none cached


def in_blocks(m, pfn):
    return (pfn & ~511) in m.k.design.blocks


@pytest.fixture
def m():
    return Machine(nodes=1, node_mem="1G", patches=(1, 2), seed=0)


@pytest.fixture
def m2():
    return Machine(nodes=2, node_mem="1G", patches=(1, 2), seed=0)


# ---------------------------------------------------------------- config, flag, GFP


def test_gfp_grouped_value():
    assert int(GFP_GROUPED) == 0x2CC2
    assert int(GFP_GROUPED) == int(GFP_KERNEL) | 0x2000 | 0x02     # | __GFP_NOWARN | HIGHMEM
    assert VM_GROUP_PAGES == 0x400


@pytest.mark.parametrize("patches", [(), (1,)])
def test_vm_group_pages_ignored_without_patch_2(patches):
    m = Machine(nodes=1, node_mem="1G", patches=patches, seed=0)
    assert not hasattr(m.k.design, "grouped_pages_lru")
    free = m.meminfo()["MemFree"]
    addr = grouped(m, 3)
    st = m.stats()
    assert "grouped_replenish" not in st and "grouped_cache_pages" not in st   # no cache at all
    assert m.grouped_blocks() == [] and m.pools() == []
    assert m.meminfo()["MemFree"] <= free - 3 * 4        # ordinary order-0 pages
    m.vfree(addr)
    drain_all_pages(m.k)
    assert m.meminfo()["MemFree"] == free                # all back in the buddy
    assert cache(m) == 0
    m.check()


# ---------------------------------------------------------------- allocation path


def test_replenish_caches_511_pages_and_returns_page_0(m):
    free = m.meminfo()["MemFree"]
    addr = grouped(m, 1)
    st = m.stats()
    assert st["grouped_replenish"] == 1 and st["grouped_hits"] == 0
    assert cache(m) == 511
    (pfn,) = pfns(m, addr)
    assert pfn % 512 == 0                                 # page 0 of an aligned order-9 block
    assert list(m.k.design.blocks) == [pfn]
    # the whole 2 MiB block left the buddy; cached pages are not free memory
    assert m.meminfo()["MemFree"] == free - 2048
    assert m.meminfo()["VmallocUsed"] == 4
    m.check()


def test_lifo_reuse_descending_pfns_after_replenish(m):
    addr = grouped(m, 6)
    got = pfns(m, addr)
    base = got[0]
    assert base % 512 == 0
    assert got == [base, base + 511, base + 510, base + 509, base + 508, base + 507]
    nxt = grouped(m, 2)
    assert pfns(m, nxt) == [base + 506, base + 505]
    assert m.stats()["grouped_hits"] == 7
    assert m.stats()["grouped_replenish"] == 1


def test_most_recently_freed_page_is_reused_first(m):
    keep = grouped(m, 1)
    a = grouped(m, 3)
    freed = pfns(m, a)
    m.vfree(a)                                            # added in area order: last is MRU
    b = grouped(m, 3)
    assert pfns(m, b) == list(reversed(freed))
    assert m.find_vm_area(keep) is not None
    m.check()


def test_numa_no_node_round_robin_alternates_start_node(m2):
    grouped(m2, 1, node=0)
    grouped(m2, 1, node=1)
    assert m2.stats()["grouped_cache_pages_per_node"] == [511, 511]
    rr = m2.k.design.nid_round_robin
    assert rr == 0                                        # specific nodes do not advance it
    addr = grouped(m2, 6)
    assert nids(m2, addr) == [0, 1, 0, 1, 0, 1]
    assert m2.k.design.nid_round_robin == rr + 6         # once per page
    assert m2.stats()["grouped_cache_pages_per_node"] == [508, 508]
    addr = grouped(m2, 3)                                 # counter is even again: node 0 first
    assert nids(m2, addr) == [0, 1, 0]
    grouped(m2, 1)                                        # odd count → the next starts on 1
    assert nids(m2, grouped(m2, 2)) == [0, 1]
    m2.check()


def test_round_robin_advances_even_when_another_node_supplies(m2):
    grouped(m2, 1, node=0)                                # only node 0 has a cache
    rr = m2.k.design.nid_round_robin
    addr = grouped(m2, 5)
    assert nids(m2, addr) == [0] * 5                      # node 1 probed first, empty
    assert m2.k.design.nid_round_robin == rr + 5
    assert m2.stats()["grouped_replenish"] == 1
    assert m2.stats()["grouped_cache_pages_per_node"] == [506, 0]


@pytest.mark.parametrize("filled,asked", [(1, 0), (0, 1)])
def test_specific_node_never_takes_from_another_nodes_cache(m2, filled, asked):
    grouped(m2, 1, node=filled)
    per_node = m2.stats()["grouped_cache_pages_per_node"]
    assert per_node[filled] == 511 and per_node[asked] == 0
    addr = grouped(m2, 4, node=asked)
    assert nids(m2, addr) == [asked] * 4
    st = m2.stats()
    assert st["grouped_replenish"] == 2                   # a miss replenishes on that node
    assert st["grouped_cache_pages_per_node"][filled] == 511   # untouched
    assert st["grouped_cache_pages_per_node"][asked] == 508
    blocks = m2.k.design.blocks
    assert sorted(blocks.values()) == [0, 1]
    m2.check()


def test_unsupported_gfp_warns_fails_and_leaks_nothing(m):
    grouped(m, 2)                                         # a non-empty cache
    drain_all_pages(m.k)
    before = m.meminfo()
    size_before = cache(m)
    areas_before = len(busy_areas(m.k))
    addr = m.vmalloc_node_range(3 * PAGE, vm_flags=VM_GROUP_PAGES,
                                gfp=GFP_KERNEL | __GFP_ZERO)
    assert addr is None
    assert "WARNING: Unsupported GFP flags for VM_GROUP_PAGES" in m.warnings
    assert m.stats()["grouped_bad_gfp"] == 1
    drain_all_pages(m.k)
    after = m.meminfo()
    assert after["MemFree"] == before["MemFree"]
    assert after["VmallocUsed"] == before["VmallocUsed"]
    assert cache(m) == size_before
    assert len(busy_areas(m.k)) == areas_before
    m.check()


def test_plain_gfp_kernel_is_exactly_gfp_grouped_after_vmalloc_adds_flags(m):
    # __vmalloc_area_node ORs __GFP_NOWARN | __GFP_HIGHMEM into GFP_KERNEL: no WARN
    grouped(m, 1, gfp=GFP_KERNEL)
    assert m.warnings == []
    assert m.stats()["grouped_bad_gfp"] == 0


# ---------------------------------------------------------------- free path


def test_every_page_returns_to_the_cache_on_vfree(m):
    addr = grouped(m, 5)
    area_pfns = pfns(m, addr)
    assert cache(m) == 507
    free = m.meminfo()["MemFree"]
    m.vfree(addr)
    assert cache(m) == 512
    assert m.meminfo()["MemFree"] == free                 # still allocated to the buddy
    for pfn in area_pfns:
        assert m.k.pages.pfn_to_page(pfn).owner == "grouped"
    m.check()


def _compaction_deferred(m):
    """Every zone as after six failed compactions for order 9: the next 64 attempts are
    skipped, so an order-9 refill on fragmented memory falls back (v5.11 would compact
    page cache out of a pageblock otherwise, tests/test_compaction.py)."""
    for z in m.k.zones:
        for _ in range(COMPACT_MAX_DEFER_SHIFT):
            defer_compaction(z, 9)


def test_fallback_pages_go_to_the_cache_too():
    m = Machine(nodes=1, node_mem="1G", patches=(1, 2), seed=0)
    m.set_memory_pressure(1.0)
    _compaction_deferred(m)
    assert m.order9_free_blocks() == 0
    before = m.stats()
    addr = grouped(m, 3)
    st = m.stats()
    assert st["grouped_fallback"] - before["grouped_fallback"] >= 1
    area_pfns = pfns(m, addr)
    fallback = [p for p in area_pfns if not in_blocks(m, p)]
    assert fallback                                       # at least one page not from a block
    size = cache(m)
    m.vfree(addr)
    assert cache(m) == size + 3                           # cache pollution (spec §1.10)
    for pfn in fallback:
        assert m.k.pages.pfn_to_page(pfn).owner == "grouped"
    m.check()


def test_drop_caches_2_frees_the_cache_but_the_direct_map_stays_split(m):
    free = m.meminfo()["MemFree"]
    addr = grouped(m, 3)
    m.set_vm_flush_reset_perms(addr)
    assert m.set_memory_ro(addr, 3) == 0
    m.vfree(addr)
    assert cache(m) == 512
    (block,) = m.grouped_blocks()
    assert block["split_2m"]
    split = dmap(m)
    splits = m.stats()["splits_2m"]
    assert split["DirectMap4k"] > 30720                   # the block's region is now 4K
    m.drop_caches(2)
    assert cache(m) == 0
    assert m.stats()["shrinker_freed"] == 512
    assert dmap(m) == split                               # no re-merge (spec §1.10)
    assert m.stats()["splits_2m"] == splits
    (block,) = m.grouped_blocks()
    assert block["split_2m"] and block["returned"] == 512 and block["cached"] == 0
    base = block["pfn"]
    assert all(m.k.dmap.lookup_address(base + i)[0] == PG_LEVEL_4K for i in (0, 100, 511))
    drain_all_pages(m.k)
    # every cached page is back in the buddy; only the split's page tables stay allocated
    assert m.meminfo()["MemFree"] == free - 4 * m.stats()["page_table_pages"]
    m.check()


# ---------------------------------------------------------------- the shrinker


def test_def_priority_does_not_scan_but_defers_at_lower_priorities(m):
    grouped(m, 1)
    assert cache(m) == 511
    assert m.shrink_slab(0, DEF_PRIORITY) == 0
    st = m.stats()
    assert st["shrinker_calls"] == 0 and st["nr_deferred"] == [0]
    for p in (11, 10, 9):                                 # (511 >> p) == 0: nothing at all
        assert m.shrink_slab(0, p) == 0
    assert m.stats()["nr_deferred"] == [0]
    for i in range(1, 4):                                 # delta = 2 × (511 >> 8) = 2
        assert m.shrink_slab(0, 8) == 0
        assert m.stats()["nr_deferred"] == [2 * i]
    assert m.shrink_slab(0, 7) == 0                       # 6 + 2 × 3 = 12 < 128
    assert m.stats()["nr_deferred"] == [12]
    assert m.stats()["shrinker_calls"] == 0
    assert cache(m) == 511
    assert m.shrink_slab(0, 0) == 511                     # priority 0 empties it
    assert cache(m) == 0
    m.check()


@pytest.mark.parametrize("gfp", [GFP_KERNEL, GFP_NOFS, GFP_NOIO, GFP_ATOMIC, GFP_NOWAIT,
                                 __GFP_HIGHMEM],
                         ids=["KERNEL", "NOFS", "NOIO", "ATOMIC", "NOWAIT", "HIGHMEM"])
def test_shrinker_gfp_intersection_passes(m, gfp):
    assert gfp & GFP_GROUPED                              # shares a bit with GFP_GROUPED
    grouped(m, 1)
    assert m.shrink_slab(0, 0, gfp=gfp) == 511
    assert cache(m) == 0


@pytest.mark.parametrize("gfp", [0, __GFP_MOVABLE], ids=["zero", "MOVABLE"])
def test_shrinker_gfp_without_shared_bits_stops(m, gfp):
    assert not gfp & GFP_GROUPED
    grouped(m, 1)
    assert m.shrink_slab(0, 0, gfp=gfp) == 0
    assert cache(m) == 511
    st = m.stats()
    assert st["shrinker_calls"] == 1 and st["shrinker_stop"] == 1
    assert st["nr_deferred"] == [1022]                    # nothing scanned: all deferred


@pytest.mark.parametrize("quirk,calls,deferred", [(True, 4, 0), (False, 7, 126)])
def test_nr_scanned_quirk_changes_the_number_of_scan_calls(quirk, calls, deferred):
    m = Machine(nodes=1, node_mem="1G", patches=(1, 2), nr_scanned_quirk=quirk)
    grouped(m, 1)
    assert m.shrink_slab(0, 0) == 511
    st = m.stats()
    assert st["shrinker_calls"] == calls
    assert st["nr_deferred"] == [deferred]
    assert cache(m) == 0
    m.check()


def test_register_shrinker_failure_leaves_the_cache_disabled():
    m = Machine(nodes=2, node_mem="1G", patches=(1, 2), faults=("register_shrinker",))
    assert m.k.design.grouped_page_en is False
    drain_all_pages(m.k)
    free = m.meminfo()["MemFree"]
    addr = grouped(m, 4)
    assert m.stats()["grouped_replenish"] == 0
    assert m.grouped_blocks() == []
    m.vfree(addr)
    assert cache(m) == 0
    drain_all_pages(m.k)
    assert m.meminfo()["MemFree"] == free
    assert m.shrink_slab(0, 0) == 0
    m.check()


# ---------------------------------------------------------------- storage variants


def _sequence(list_head):
    m = Machine(nodes=2, node_mem="1G", patches=(1, 2), seed=7, list_head=list_head)
    seen, live = [], []
    for i in range(8):
        node = (-1, 0, 1)[i % 3]
        addr = grouped(m, i + 1, node=node)
        m.set_vm_flush_reset_perms(addr)
        m.set_memory_ro(addr, 1)
        live.append(addr)
        seen.append(pfns(m, addr))
        if i % 3 == 2:
            m.vfree(live.pop(0))
    m.shrink_slab(1, 0)
    seen.append(pfns(m, grouped(m, 9)))
    m.vfree(live.pop())
    st = m.stats()
    return m, seen, st


def test_storage_variants_place_identically_and_count_identically():
    mc, seen_c, st_c = _sequence("contents")
    ms, seen_s, st_s = _sequence("struct_page")
    assert seen_c == seen_s
    assert st_c == st_s
    assert dmap(mc) == dmap(ms)
    assert mc.grouped_blocks() == ms.grouped_blocks()
    mc.check()
    ms.check()


def test_poison_check_reports_cached_pages_only_for_contents():
    mc, _, _ = _sequence("contents")
    ms, _, _ = _sequence("struct_page")
    assert cache(mc) > 0
    reports = mc.poison_check()
    assert len(reports) == cache(mc)
    assert all("list_head" in r for r in reports)
    assert ms.poison_check() == []


def test_unmapped_cache_contents_faults_on_first_put_into_the_cache():
    # the replenish puts pages 1..511 into the cache with the same __free_grouped_page(): the
    # very first VM_GROUP_PAGES allocation on an idle machine is already the first fault
    m = Machine(nodes=1, node_mem="1G", patches=(1, 2), list_head="contents",
                unmapped_cache=True)
    with pytest.raises(KernelBUG, match="not-present page"):
        m.vmalloc_node_range(PAGE, vm_flags=VM_GROUP_PAGES)


def test_unmapped_cache_contents_faults_on_first_vfree_of_fallback_pages():
    m = Machine(nodes=1, node_mem="1G", patches=(1, 2), list_head="contents",
                unmapped_cache=True)
    m.set_memory_pressure(1.0)
    _compaction_deferred(m)
    addr = m.vmalloc_node_range(PAGE, vm_flags=VM_GROUP_PAGES)
    assert addr is not None
    assert m.stats()["grouped_fallback"] == 1 and m.stats()["grouped_replenish"] == 0
    with pytest.raises(KernelBUG, match="page fault"):
        m.vfree(addr)


def test_unmapped_cache_struct_page_works():
    m = Machine(nodes=1, node_mem="1G", patches=(1, 2), list_head="struct_page",
                unmapped_cache=True)
    addr = grouped(m, 2)
    area_pfns = pfns(m, addr)
    base = area_pfns[0]
    assert not m.k.dmap.lookup_address(base + 300)[1] & _PAGE_PRESENT   # cached: unmapped
    m.check()
    m.vfree(addr)
    assert cache(m) == 512
    for pfn in area_pfns:
        assert not m.k.dmap.lookup_address(pfn)[1] & _PAGE_PRESENT
    m.check()
    again = grouped(m, 1)
    (pfn,) = pfns(m, again)
    prot = m.k.dmap.lookup_address(pfn)[1]
    assert prot & _PAGE_PRESENT and prot & _PAGE_RW        # mapped again when handed out
    m.drop_caches(2)
    assert cache(m) == 0
    assert m.k.dmap.lookup_address(base + 300)[1] & _PAGE_PRESENT
    m.check()


def test_ro_area_without_reset_perms_faults_in_contents_cache():
    m = Machine(nodes=1, node_mem="1G", patches=(1, 2), list_head="contents")
    addr = grouped(m, 1)
    assert m.set_memory_ro(addr, 1) == 0                  # no set_vm_flush_reset_perms()
    with pytest.raises(KernelBUG, match="protection violation"):
        m.vfree(addr)


def test_ro_area_without_reset_perms_in_struct_page_cache_is_caught_by_check():
    m = Machine(nodes=1, node_mem="1G", patches=(1, 2), list_head="struct_page")
    addr = grouped(m, 1)
    assert m.set_memory_ro(addr, 1) == 0
    m.vfree(addr)                                         # no write into the page: no fault
    assert cache(m) == 512
    with pytest.raises(InvariantError):                   # but an RO page sits in the cache
        m.check()


# ---------------------------------------------------------------- grouped_blocks


def test_grouped_blocks_add_up_to_512():
    m = Machine(nodes=2, node_mem="1G", patches=(1, 2), seed=0)
    a = grouped(m, 40, node=0)
    b = grouped(m, 5, node=1)
    c = grouped(m, 10, node=0)
    m.vfree(a)
    m.shrink_slab(0, 2)                                   # part of node 0's cache → buddy
    taken = [m.alloc_pages(node=0) for _ in range(40)]    # someone else reuses some
    blocks = m.grouped_blocks()
    assert len(blocks) == 2
    for blk in blocks:
        assert blk["cached"] + blk["in_use"] + blk["returned"] + blk["reused"] == 512
    b0 = next(x for x in blocks if x["node"] == 0)
    b1 = next(x for x in blocks if x["node"] == 1)
    assert b1 == {**b1, "cached": 507, "in_use": 5, "returned": 0, "reused": 0}
    assert b0["in_use"] == 10
    assert b0["returned"] + b0["reused"] > 0
    assert b0["reused"] == sum(1 for p in taken if p is not None and in_blocks(m, p.pfn))
    assert m.find_vm_area(b) is not None and m.find_vm_area(c) is not None
    m.check()
