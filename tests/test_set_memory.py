"""The x86-64 direct map and CPA (arch/x86/mm/pat/set_memory.c, v5.11): spec §2, §3.4, §10.3."""

import pytest

from gpalloc import Machine
from gpalloc.arch.x86.pgtable_types import (
    _PAGE_GLOBAL,
    _PAGE_NX,
    _PAGE_PRESENT,
    _PAGE_RW,
    PAGE_KERNEL,
    PG_LEVEL_1G,
    PG_LEVEL_2M,
    PG_LEVEL_4K,
)
from gpalloc.arch.x86.tlb import tlb_single_page_flush_ceiling
from gpalloc.mm.page import PAGES_PER_1G, PAGES_PER_2M, pfn_to_virt

DMAP_KEYS = ("DirectMap4k", "DirectMap2M", "DirectMap1G")


def dmap(m):
    info = m.meminfo()
    return {key: info.get(key, 0) for key in DMAP_KEYS}


def delta(before, after):
    return {key: after[key] - before[key] for key in before}


def lookup(m, pfn):
    return m.k.dmap.lookup_address(pfn)


def pages_of(m, addr):
    return m.find_vm_area(addr).pages


def ram_kb(m):
    c = m.config
    from gpalloc.units import memparse
    return c["nodes"] * memparse(c["node_mem"]) >> 10


def assert_covers_ram(m):
    d = dmap(m)
    assert d["DirectMap4k"] + d["DirectMap2M"] + d["DirectMap1G"] == ram_kb(m)


@pytest.fixture
def m():
    """Node 1's memory is above 4 GiB and mapped with 1G pages."""
    return Machine(nodes=2, node_mem="4G", seed=0)


def node1_page(m, size=4096):
    addr = m.vmalloc_node_range(size, node=1)
    assert addr is not None
    for p in pages_of(m, addr):
        assert p.nid == 1
        assert lookup(m, p.pfn)[0] == PG_LEVEL_1G        # precondition: inside a 1G mapping
    return addr


# ---------------------------------------------------------------- boot


def test_boot_direct_map(m):
    d = dmap(m)
    assert d["DirectMap4k"] == 30720                  # boot_4k="30M" default
    assert d["DirectMap1G"] == 7 * 1048576            # every GiB but the first
    assert_covers_ram(m)
    assert m.stats()["page_table_pages"] == 0


def test_no_gbpages_no_directmap1g_line():
    m = Machine(nodes=1, node_mem="4G", gbpages=False)
    assert "DirectMap1G" not in m.meminfo()
    assert "DirectMap1G" not in m.proc_meminfo()
    assert m.meminfo()["DirectMap2M"] + m.meminfo()["DirectMap4k"] == 4 << 20


# ---------------------------------------------------------------- the three deltas


def test_set_memory_ro_inside_1g_mapping_three_deltas(m):
    addr = node1_page(m)
    pfn = pages_of(m, addr)[0].pfn
    before, st = dmap(m), m.stats()
    assert m.set_memory_ro(addr, 1) == 0
    assert delta(before, dmap(m)) == {"DirectMap4k": 2048, "DirectMap2M": 1046528,
                                      "DirectMap1G": -1048576}
    after = m.stats()
    assert after["splits_1g"] - st["splits_1g"] == 1
    assert after["splits_2m"] - st["splits_2m"] == 1
    assert after["page_table_pages"] - st["page_table_pages"] == 2
    # two splits (one global flush each) plus the final CPA flush (alias processed → global)
    assert after["flush_tlb_all"] - st["flush_tlb_all"] == 3
    level, prot = lookup(m, pfn)
    assert level == PG_LEVEL_4K
    assert not prot & _PAGE_RW and prot & _PAGE_PRESENT and prot & _PAGE_NX
    # the vmalloc PTE is RO too
    area = m.find_vm_area(addr)
    assert not area.prot[0] & _PAGE_RW
    assert_covers_ram(m)
    m.check()


def test_set_memory_ro_inside_2m_mapping_one_split():
    m = Machine(nodes=1, node_mem="4G", gbpages=False)
    addr = m.vmalloc(4096)
    pfn = pages_of(m, addr)[0].pfn
    assert lookup(m, pfn)[0] == PG_LEVEL_2M
    before = dmap(m)
    m.set_memory_ro(addr, 1)
    d = delta(before, dmap(m))
    assert d["DirectMap4k"] == 2048 and d["DirectMap2M"] == -2048
    assert m.stats()["splits_2m"] == 1 and m.stats()["splits_1g"] == 0
    m.check()


def test_split_keeps_neighbours_rw_and_global(m):
    addr = node1_page(m)
    pfn = pages_of(m, addr)[0].pfn
    m.set_memory_ro(addr, 1)
    for other in (pfn ^ 1, (pfn & ~511) + 300):
        level, prot = lookup(m, other)
        assert level == PG_LEVEL_4K
        assert prot == PAGE_KERNEL
    # the rest of the former 1G page is 2M-mapped, still PAGE_KERNEL
    level, prot = lookup(m, pfn + 4 * PAGES_PER_2M)
    assert level == PG_LEVEL_2M and prot == PAGE_KERNEL


def test_set_memory_x_never_changes_the_direct_map(m):
    addr = node1_page(m, 4 * 4096)
    pfns = [p.pfn for p in pages_of(m, addr)]
    before, st = dmap(m), m.stats()
    prots = [lookup(m, p) for p in pfns]
    assert m.set_memory_x(addr, 4) == 0
    assert dmap(m) == before
    assert [lookup(m, p) for p in pfns] == prots             # direct map stays NX
    assert all(lookup(m, p)[1] & _PAGE_NX for p in pfns)
    assert m.stats()["splits_2m"] == st["splits_2m"]
    assert m.stats()["splits_1g"] == st["splits_1g"]
    area = m.find_vm_area(addr)
    assert all(not prot & _PAGE_NX for prot in area.prot)   # the vmalloc alias is X
    assert m.set_memory_nx(addr, 4) == 0
    assert dmap(m) == before
    assert all(prot & _PAGE_NX for prot in m.find_vm_area(addr).prot)


def test_second_ro_page_in_same_2m_region_splits_nothing(m):
    addr = node1_page(m, 2 * 4096)
    p0, p1 = pages_of(m, addr)
    assert p0.pfn >> 9 == p1.pfn >> 9                       # precondition: same 2M region
    m.set_memory_ro(addr, 1)
    before, st = dmap(m), m.stats()
    assert m.set_memory_ro(addr + 4096, 1) == 0
    assert dmap(m) == before
    assert m.stats()["splits_2m"] == st["splits_2m"]
    assert m.stats()["page_table_pages"] == st["page_table_pages"]
    assert not lookup(m, p1.pfn)[1] & _PAGE_RW
    m.check()


def test_set_memory_ro_rw_change_exactly_one_pte_per_page(m):
    addr = node1_page(m, 3 * 4096)
    pfns = [p.pfn for p in pages_of(m, addr)]
    m.set_memory_ro(addr, 3)
    table = m.k.dmap.pte[pfns[0] >> 9]
    ro = [i for i, prot in enumerate(table) if not prot & _PAGE_RW]
    assert sorted(ro) == sorted(p & 511 for p in pfns if p >> 9 == pfns[0] >> 9)
    m.set_memory_rw(addr, 3)
    assert all(lookup(m, p)[1] & _PAGE_RW for p in pfns)


# ---------------------------------------------------------------- VM_FLUSH_RESET_PERMS


def test_vfree_reset_perms_splits_pages_never_made_ro(m):
    addr = node1_page(m)
    pfn = pages_of(m, addr)[0].pfn
    m.set_vm_flush_reset_perms(addr)
    before = dmap(m)
    m.vfree(addr)
    assert delta(before, dmap(m)) == {"DirectMap4k": 2048, "DirectMap2M": 1046528,
                                      "DirectMap1G": -1048576}
    level, prot = lookup(m, pfn)
    assert level == PG_LEVEL_4K
    assert prot & _PAGE_PRESENT and prot & _PAGE_RW      # back to default after the reset
    assert m.stats()["reset_perms_frees"] == 1
    m.check()


def test_vfree_reset_perms_splits_the_regions_of_all_pages(m):
    n = 1200                                              # spans at least 3 2M regions
    addr = node1_page(m, n * 4096)
    pages = pages_of(m, addr)
    regions = {p.pfn >> 9 for p in pages}
    gigs = {p.pfn >> 18 for p in pages}
    assert len(regions) >= 3
    m.set_vm_flush_reset_perms(addr)
    assert m.set_memory_ro(addr, 1) == 0                  # only page 0 is ever made RO
    st = m.stats()
    assert st["splits_2m"] == 1
    m.vfree(addr)
    st = m.stats()
    # data pages too: every 2M region holding a page of the area is now 4K-mapped
    for p in pages:
        level, prot = lookup(m, p.pfn)
        assert level == PG_LEVEL_4K
        assert prot & (_PAGE_PRESENT | _PAGE_RW) == _PAGE_PRESENT | _PAGE_RW
    assert st["splits_2m"] == len(regions)
    assert st["splits_1g"] == len(gigs)
    assert_covers_ram(m)
    m.check()


def test_vfree_without_reset_perms_leaves_the_direct_map(m):
    addr = node1_page(m, 8 * 4096)
    before, st = dmap(m), m.stats()
    m.vfree(addr)
    assert dmap(m) == before
    assert m.stats()["splits_2m"] == st["splits_2m"]
    assert m.stats()["reset_perms_frees"] == 0


def test_global_bit_lost_after_invalid_then_default(m):
    addr = node1_page(m)
    pfn = pages_of(m, addr)[0].pfn
    m.set_vm_flush_reset_perms(addr)
    m.set_memory_ro(addr, 1)
    assert lookup(m, pfn)[1] & _PAGE_GLOBAL
    m.vfree(addr)
    prot = lookup(m, pfn)[1]
    assert prot & _PAGE_PRESENT and prot & _PAGE_RW and prot & _PAGE_NX
    assert not prot & _PAGE_GLOBAL
    neighbour = lookup(m, pfn ^ 1)[1]
    assert neighbour == PAGE_KERNEL and neighbour & _PAGE_GLOBAL


def test_reset_on_an_already_split_region_splits_nothing_more(m):
    addr = node1_page(m, 2 * 4096)
    m.set_vm_flush_reset_perms(addr)
    m.set_memory_ro(addr, 2)
    before, st = dmap(m), m.stats()
    m.vfree(addr)
    assert dmap(m) == before
    assert m.stats()["splits_2m"] == st["splits_2m"]


# ---------------------------------------------------------------- flushes


def _flushes(m):
    st = m.stats()
    return st["flush_tlb_all"], st["flush_tlb_range"], st["flush_tlb_range_pages"]


@pytest.mark.parametrize("setter", ["set_memory_x", "set_memory_nx"])
@pytest.mark.parametrize("npages", [1, 33])
def test_x_nx_flush_ranged_up_to_33_pages(m, setter, npages):
    assert tlb_single_page_flush_ceiling == 33
    addr = m.vmalloc(npages * 4096)
    if setter == "set_memory_nx":
        m.set_memory_x(addr, npages)                     # so that nx changes something
    a0, r0, rp0 = _flushes(m)
    assert getattr(m, setter)(addr, npages) == 0
    a1, r1, rp1 = _flushes(m)
    assert (a1 - a0, r1 - r0, rp1 - rp0) == (0, 1, npages)


@pytest.mark.parametrize("setter", ["set_memory_x", "set_memory_nx"])
@pytest.mark.parametrize("npages", [34, 100])
def test_x_nx_flush_globally_above_33_pages(m, setter, npages):
    addr = m.vmalloc(npages * 4096)
    if setter == "set_memory_nx":
        m.set_memory_x(addr, npages)
    a0, r0, _ = _flushes(m)
    assert getattr(m, setter)(addr, npages) == 0
    a1, r1, _ = _flushes(m)
    assert (a1 - a0, r1 - r0) == (1, 0)


def test_set_memory_ro_flushes_globally_even_for_one_page(m):
    addr = m.vmalloc(4096)
    m.set_memory_ro(addr, 1)                              # split the alias once...
    m.set_memory_rw(addr, 1)                              # ...so no split flushes below
    a0, r0, _ = _flushes(m)
    m.set_memory_ro(addr, 1)
    a1, r1, _ = _flushes(m)
    assert (a1 - a0, r1 - r0) == (1, 0)                  # alias processed → flush_tlb_all


def test_nothing_changed_means_no_flush(m):
    addr = m.vmalloc(4096)
    m.set_memory_nx(addr, 1)                              # already NX
    assert _flushes(m) == (0, 0, 0)


def test_cpa_purges_lazy_areas_first(m):
    a = m.vmalloc(4096)
    b = m.vmalloc(4096)
    m.vfree(a)
    assert m.stats()["lazy_purges"] == 0
    m.set_memory_x(b, 1)
    assert m.stats()["lazy_purges"] == 1                 # vm_unmap_aliases() purged it


# ---------------------------------------------------------------- shortcuts


def test_same_prot_shortcut_set_memory_rw_on_rw_page(m):
    addr = node1_page(m)
    before, st = dmap(m), m.stats()
    assert m.set_memory_rw(addr, 1) == 0
    assert dmap(m) == before
    after = m.stats()
    assert after["splits_1g"] == st["splits_1g"] and after["splits_2m"] == st["splits_2m"]
    assert after["page_table_pages"] == st["page_table_pages"]
    assert after["flush_tlb_all"] == st["flush_tlb_all"]   # nothing changed, no flush


def test_whole_2m_page_shortcut_via_direct_map_address(m):
    pfn = 100 * PAGES_PER_2M                              # 200 MiB: a 2M mapping in node 0
    assert lookup(m, pfn)[0] == PG_LEVEL_2M
    before, st = dmap(m), m.stats()
    assert m.set_memory_ro(pfn_to_virt(pfn), PAGES_PER_2M) == 0
    assert dmap(m) == before
    assert m.stats()["splits_2m"] == st["splits_2m"]
    level, prot = lookup(m, pfn + 17)
    assert level == PG_LEVEL_2M and not prot & _PAGE_RW
    assert m.set_memory_rw(pfn_to_virt(pfn), PAGES_PER_2M) == 0
    assert lookup(m, pfn + 17) == (PG_LEVEL_2M, PAGE_KERNEL)
    assert m.stats()["splits_2m"] == st["splits_2m"]


def test_whole_1g_page_shortcut_via_direct_map_address(m):
    pfn = 5 * PAGES_PER_1G
    assert lookup(m, pfn)[0] == PG_LEVEL_1G
    before = dmap(m)
    assert m.set_memory_ro(pfn_to_virt(pfn), PAGES_PER_1G) == 0
    assert dmap(m) == before
    level, prot = lookup(m, pfn + 12345)
    assert level == PG_LEVEL_1G and not prot & _PAGE_RW
    assert m.stats()["splits_1g"] == 0


def test_partial_large_page_splits(m):
    pfn = 101 * PAGES_PER_2M
    before = dmap(m)
    m.set_memory_ro(pfn_to_virt(pfn), PAGES_PER_2M - 1)     # one page short
    assert delta(before, dmap(m))["DirectMap4k"] == 2048
    assert lookup(m, pfn)[0] == PG_LEVEL_4K
    assert lookup(m, pfn + 511)[1] == PAGE_KERNEL


def test_unaligned_whole_size_splits(m):
    pfn = 102 * PAGES_PER_2M + 1
    before = dmap(m)
    m.set_memory_ro(pfn_to_virt(pfn), PAGES_PER_2M)         # right size, wrong start
    assert delta(before, dmap(m))["DirectMap4k"] == 2 * 2048


def test_set_memory_4k_forces_a_split_without_changing_prot(m):
    # spec §2.3 table: set_memory_4k = no change, force_split=1, alias checked; the alias
    # cpa is a copy of the primary one (force_split included), so the direct map splits too
    addr = node1_page(m)
    pfn = pages_of(m, addr)[0].pfn
    m.set_memory_4k(addr, 1)
    assert lookup(m, pfn) == (PG_LEVEL_4K, PAGE_KERNEL)
    assert m.stats()["splits_1g"] == 1 and m.stats()["splits_2m"] == 1


def test_set_memory_4k_on_direct_map_address():
    m = Machine(nodes=1, node_mem="4G")
    pfn = 100 * PAGES_PER_2M + 5
    m.set_memory_4k(pfn_to_virt(pfn), 1)
    assert lookup(m, pfn) == (PG_LEVEL_4K, PAGE_KERNEL)
    assert m.stats()["splits_2m"] == 1


def test_set_memory_np_makes_alias_not_present(m):
    addr = node1_page(m)
    pfn = pages_of(m, addr)[0].pfn
    m.set_memory_np(addr, 1)
    prot = lookup(m, pfn)[1]
    assert not prot & _PAGE_PRESENT
    assert not prot & _PAGE_GLOBAL                        # non-present PTEs lose GLOBAL


def test_set_memory_on_unmapped_vmalloc_address_fails(m):
    addr = m.vmalloc(4096)
    from gpalloc.mm.vmalloc import VMALLOC_START
    assert m.set_memory_ro(VMALLOC_START + (1 << 40), 1) < 0
    assert any("CPA" in w for w in m.warnings)
    assert m.set_memory_ro(addr, 1) == 0


# ---------------------------------------------------------------- invariants


def test_counters_times_sizes_equal_ram_always(m):
    assert_covers_ram(m)
    areas = []
    for i in range(6):
        addr = m.vmalloc_node_range((i + 1) * 4096, node=i % 2)
        m.set_vm_flush_reset_perms(addr)
        m.set_memory_ro(addr, i + 1)
        m.set_memory_x(addr, i + 1)
        areas.append(addr)
        assert_covers_ram(m)
    m.set_memory_ro(pfn_to_virt(6 * PAGES_PER_1G + 3), 700)
    assert_covers_ram(m)
    for addr in areas:
        m.vfree(addr)
        assert_covers_ram(m)
    c = m.k.dmap.direct_pages_count
    assert c[1] + c[2] * PAGES_PER_2M + c[3] * PAGES_PER_1G == m.k.max_pfn
    m.check()


def test_counters_only_move_down(m):
    prev = dmap(m)
    for _ in range(5):
        addr = m.vmalloc_node_range(4096, node=1)
        m.set_vm_flush_reset_perms(addr)
        m.set_memory_ro(addr, 1)
        m.vfree(addr)
        now = dmap(m)
        assert now["DirectMap1G"] <= prev["DirectMap1G"]
        assert now["DirectMap4k"] >= prev["DirectMap4k"]
        prev = now
