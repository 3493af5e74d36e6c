"""vmalloc (mm/vmalloc.c, v5.11): spec §3 — guard pages, lowest fit, lazy purge, vfree,
VmallocUsed, /proc/vmallocinfo, nested page arrays."""

import re

import pytest

from gpalloc import GFP_KERNEL, VM_FLUSH_RESET_PERMS, Machine
from gpalloc.mm import vmalloc as vm
from gpalloc.mm.page_alloc import drain_all_pages

PAGE = 4096


@pytest.fixture
def m():
    return Machine(nodes=2, node_mem="4G", seed=0)


def flushes(m):
    st = m.stats()
    return st["flush_tlb_all"] + st["flush_tlb_range"]


# ---------------------------------------------------------------- placement


def test_first_area_at_vmalloc_start(m):
    assert m.vmalloc(PAGE) == vm.VMALLOC_START


@pytest.mark.parametrize("npages", [1, 2, 7])
def test_guard_page_between_consecutive_areas(m, npages):
    a = m.vmalloc(npages * PAGE)
    b = m.vmalloc(npages * PAGE)
    c = m.vmalloc(PAGE)
    assert b - a == npages * PAGE + PAGE
    assert c - b == npages * PAGE + PAGE
    area = m.find_vm_area(a)
    assert area.size == (npages + 1) * PAGE           # vm_struct size includes the guard
    assert area.nr_pages == npages
    # the guard page is part of the vmap_area (va_end includes it): find_vm_area sees it
    assert m.find_vm_area(a + npages * PAGE) is area
    assert m.find_vm_area(a + (npages + 1) * PAGE) is m.find_vm_area(b)


def test_size_is_page_aligned(m):
    a = m.vmalloc(1)
    b = m.vmalloc(PAGE + 1)
    c = m.vmalloc(PAGE)
    assert b - a == 2 * PAGE
    assert c - b == 3 * PAGE
    assert m.find_vm_area(b).nr_pages == 2


def test_lowest_fit_reuses_a_purged_hole(m):
    a = m.vmalloc(PAGE)
    b = m.vmalloc(3 * PAGE)
    c = m.vmalloc(PAGE)
    m.vfree(b)
    vm.purge_vmap_area_lazy(m.k)
    # a smaller request takes the lowest hole (b's old range)...
    d = m.vmalloc(PAGE)
    assert d == b
    # ...the rest of the hole (2 pages) still fits a 1-page area...
    e = m.vmalloc(PAGE)
    assert e == b + 2 * PAGE
    # ...but a larger one goes above everything
    f = m.vmalloc(4 * PAGE)
    assert f == c + 2 * PAGE
    assert a < d < c


def test_module_alloc_lives_in_the_module_area(m):
    from gpalloc.arch.x86.module import MODULES_END, MODULES_VADDR
    a = m.module_alloc(PAGE)
    b = m.module_alloc(PAGE)
    assert MODULES_VADDR < a < MODULES_END
    assert (a - MODULES_VADDR) % PAGE == 0
    assert 1 <= (a - MODULES_VADDR) // PAGE <= 1024    # KASLR load offset: 1..1024 pages
    assert b - a == 2 * PAGE


def test_module_alloc_without_kaslr_starts_at_modules_vaddr():
    from gpalloc.arch.x86.module import MODULES_VADDR
    m = Machine(kaslr=False)
    assert m.module_alloc(PAGE) == MODULES_VADDR


# ---------------------------------------------------------------- lazy purge


def test_freed_va_not_reused_until_purged(m):
    a = m.vmalloc(PAGE)
    m.vfree(a)
    assert m.find_vm_area(a) is None
    b = m.vmalloc(PAGE)
    assert b != a                                   # still on the purge list
    assert b == a + 2 * PAGE
    assert m.stats()["lazy_purges"] == 0
    vm.purge_vmap_area_lazy(m.k)
    assert m.vmalloc(PAGE) == a


def test_one_flush_per_purge(m):
    areas = [m.vmalloc(PAGE) for _ in range(5)]
    for a in areas[:4]:
        m.vfree(a)
    assert flushes(m) == 0                          # lazy: no flush at vfree
    assert m.stats()["lazy_purges"] == 0
    vm.purge_vmap_area_lazy(m.k)
    st = m.stats()
    assert st["lazy_purges"] == 1
    assert flushes(m) == 1
    # four adjacent 2-page ranges = 8 pages ≤ 33: one ranged flush covering them
    assert st["flush_tlb_range"] == 1 and st["flush_tlb_range_pages"] == 8
    # nothing left to purge: no flush
    assert vm.purge_vmap_area_lazy(m.k) is False
    assert flushes(m) == 1


def test_purge_of_a_wide_span_flushes_globally(m):
    a = m.vmalloc(PAGE)
    m.vmalloc(40 * PAGE)
    c = m.vmalloc(PAGE)
    m.vfree(a)
    m.vfree(c)
    vm.purge_vmap_area_lazy(m.k)
    st = m.stats()
    assert st["flush_tlb_all"] == 1 and st["flush_tlb_range"] == 0


def test_purge_when_lazy_exceeds_lazy_max_pages(m):
    # lazy_max_pages = fls(num_online_cpus) × 32 MiB = fls(4) × 8192 = 24576 pages
    assert m.k.nr_cpus == 4
    assert vm.lazy_max_pages(m.k) == 3 * 8192
    areas = [m.vmalloc(511 * PAGE) for _ in range(49)]   # 512 pages of VA each (+guard)
    for i, a in enumerate(areas):
        m.vfree(a)
        if i < 48:                                 # 48 × 512 = 24576: not yet above
            assert m.stats()["lazy_purges"] == 0
    assert m.stats()["lazy_purges"] == 1
    assert m.k.vmap.vmap_lazy_nr == 0


def test_vmap_allocation_purges_once_when_full(m):
    start = vm.VMALLOC_START
    end = start + 4 * PAGE
    a = m.vmalloc_node_range(PAGE, start=start, end=end)
    b = m.vmalloc_node_range(PAGE, start=start, end=end)
    assert (a, b) == (start, start + 2 * PAGE)
    m.vfree(a)
    c = m.vmalloc_node_range(PAGE, start=start, end=end)   # no room → purge → reuse a
    assert c == a
    assert m.stats()["lazy_purges"] == 1
    nwarn = len(m.warnings)
    assert m.vmalloc_node_range(PAGE, start=start, end=end) is None
    assert any("vmap allocation for size" in w for w in m.warnings[nwarn:])


# ---------------------------------------------------------------- vfree


def test_vfree_none_is_a_noop(m):
    a = m.vmalloc(PAGE)
    before_stats, before_info = m.stats(), m.proc_vmallocinfo()
    m.vfree(None)
    m.vfree(0)
    assert m.warnings == []
    assert m.stats() == before_stats
    assert m.proc_vmallocinfo() == before_info
    assert m.find_vm_area(a) is not None


def test_vfree_of_unknown_address_warns_and_carries_on(m):
    a = m.vmalloc(PAGE)
    bogus = vm.VMALLOC_START + (1 << 30)
    m.vfree(bogus)
    assert len(m.warnings) == 1
    assert "Trying to vfree() nonexistent vm area" in m.warnings[0]
    assert m.find_vm_area(a) is not None            # nothing else happened
    assert m.vmalloc(PAGE) is not None              # and the machine keeps going
    m.check()


def test_double_vfree_warns(m):
    a = m.vmalloc(PAGE)
    m.vfree(a)
    m.vfree(a)
    assert len(m.warnings) == 1
    assert "Trying to vfree() nonexistent vm area" in m.warnings[0]
    m.check()


def test_vfree_returns_pages_to_the_allocator(m):
    drain_all_pages(m.k)
    free = m.meminfo()["MemFree"]
    a = m.vmalloc(10 * PAGE)
    m.vfree(a)
    drain_all_pages(m.k)
    assert m.meminfo()["MemFree"] == free
    m.check()


def test_vfree_reset_perms_shares_one_flush(m):
    a = m.vmalloc_node_range(PAGE, node=1)
    m.set_vm_flush_reset_perms(a)
    m.set_memory_ro(a, 1)                           # splits now; nothing left to split later
    st = m.stats()
    before = flushes(m)
    m.vfree(a)
    assert flushes(m) - before == 1                 # one flush for both aliases
    assert m.stats()["splits_2m"] == st["splits_2m"]


def test_set_vm_flush_reset_perms_sets_the_flag(m):
    a = m.vmalloc(PAGE)
    assert not m.find_vm_area(a).flags & VM_FLUSH_RESET_PERMS
    assert m.set_vm_flush_reset_perms(a)
    assert m.find_vm_area(a).flags & VM_FLUSH_RESET_PERMS
    assert not m.set_vm_flush_reset_perms(vm.VMALLOC_START + (1 << 30))


# ---------------------------------------------------------------- accounting


def test_vmalloc_used(m):
    assert m.meminfo()["VmallocUsed"] == 0
    a = m.vmalloc(10 * PAGE)
    b = m.vmalloc(3 * PAGE + 1)
    assert m.meminfo()["VmallocUsed"] == (10 + 4) * 4
    m.vfree(a)
    assert m.meminfo()["VmallocUsed"] == 4 * 4
    m.vfree(b)
    assert m.meminfo()["VmallocUsed"] == 0


def test_vmalloc_used_counts_the_nested_page_array(m):
    a = m.vmalloc(513 * PAGE)                      # 513 × 8 bytes > PAGE: nested 2-page area
    assert m.meminfo()["VmallocUsed"] == (513 + 2) * 4
    m.vfree(a)
    assert m.meminfo()["VmallocUsed"] == 0


def test_bad_sizes_and_zero(m):
    nwarn = len(m.warnings)
    assert m.vmalloc(0) is None
    assert len(m.warnings) == nwarn + 1
    with pytest.raises(ValueError, match="size"):
        m.vmalloc(-PAGE)


def test_vmalloc_larger_than_ram_fails_with_a_warning():
    m = Machine(node_mem="256M")
    assert m.vmalloc("300M") is None
    assert any("vmalloc: allocation failure" in w for w in m.warnings)
    assert m.meminfo()["VmallocUsed"] == 0
    m.check()


def test_partial_failure_gives_every_page_back():
    m = Machine(node_mem="256M")
    free = m.meminfo()["MemFree"]
    assert m.vmalloc("203M") is None                # runs out of pages part-way
    assert m.stats()["vmalloc_fail"] == 1
    assert m.meminfo()["VmallocUsed"] == 0
    # no live area is left; only the lazily freed ranges show, as "unpurged vm_area"
    assert all(line.endswith("unpurged vm_area") for line in m.proc_vmallocinfo().splitlines())
    assert m.warnings == []                          # __GFP_NOWARN was added: quiet
    drain_all_pages(m.k)
    assert m.meminfo()["MemFree"] == free
    m.check()


# ---------------------------------------------------------------- /proc/vmallocinfo

LINE = re.compile(r"^0x(?P<start>[0-9a-f]{16})-0x(?P<end>[0-9a-f]{16}) (?P<size>[ \d]{7,})"
                  r"(?P<rest>.*)$")


def test_vmallocinfo_line_exact(m):
    a = m.vmalloc_node_range(PAGE, node=1, caller="my_caller+0x1c/0x40")
    line = m.proc_vmallocinfo().splitlines()[0]
    assert line == (f"0x{a:016x}-0x{a + 2 * PAGE:016x}    8192 my_caller+0x1c/0x40 "
                    "pages=1 vmalloc N1=1")


def test_vmallocinfo_lines(m):
    a = m.vmalloc(3 * PAGE, caller="alpha")
    b = m.vmalloc_node_range(2 * PAGE, node=1, caller="beta")
    c = m.module_alloc(PAGE, caller="gamma")
    text = m.proc_vmallocinfo()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == 3
    parsed = [LINE.match(ln) for ln in lines]
    assert all(parsed)
    starts = [int(p["start"], 16) for p in parsed]
    assert starts == sorted(starts) == [a, b, c]          # address order
    for p in parsed:
        assert int(p["end"], 16) - int(p["start"], 16) == int(p["size"])
    assert parsed[0]["rest"].split() == ["alpha", "pages=3", "vmalloc", "N0=3"]
    assert parsed[1]["rest"].split() == ["beta", "pages=2", "vmalloc", "N1=2"]
    assert parsed[2]["rest"].split() == ["gamma", "pages=1", "vmalloc", "N0=1"]
    m.vfree(b)
    assert len(m.proc_vmallocinfo().splitlines(keepends=False)) >= 2
    assert " beta " not in m.proc_vmallocinfo()


def test_vmallocinfo_counts_pages_per_node(m):
    m.cpu = 0
    m.vmalloc(3 * PAGE, caller="local")
    m.cpu = 2                                       # a CPU of node 1
    m.vmalloc(2 * PAGE, caller="remote")
    text = m.proc_vmallocinfo()
    assert re.search(r" local pages=3 vmalloc N0=3$", text, re.M)
    assert re.search(r" remote pages=2 vmalloc N1=2$", text, re.M)


def test_vmallocinfo_shows_unpurged_areas_after_the_busy_ones(m):
    # v5.10/5.11 s_show(): after the last busy area, show_purge_info() prints every
    # lazily freed area as "0x...-0x... %7ld unpurged vm_area"
    a = m.vmalloc(PAGE, caller="a")
    b = m.vmalloc(2 * PAGE, caller="b")
    m.vfree(a)
    lines = m.proc_vmallocinfo().splitlines()
    assert lines[0].endswith("pages=2 vmalloc N0=2")
    assert lines[0].startswith(f"0x{b:016x}-")
    assert lines[1:] == [f"0x{a:016x}-0x{a + 2 * PAGE:016x}    8192 unpurged vm_area"]
    vm.purge_vmap_area_lazy(m.k)
    assert len(m.proc_vmallocinfo().splitlines()) == 1


def test_nested_page_array_above_512_pages(m):
    a = m.vmalloc(513 * PAGE, caller="big")
    lines = m.proc_vmallocinfo().splitlines()
    assert len(lines) == 2
    main = [ln for ln in lines if "pages=513" in ln]
    nested = [ln for ln in lines if "pages=2 " in ln]
    assert len(main) == 1 and len(nested) == 1
    assert main[0].split()[2:] == ["big", "pages=513", "vmalloc", "vpages", "N0=513"]
    assert nested[0].split()[2:] == ["big", "pages=2", "vmalloc", "N0=2"]
    assert " vpages" not in nested[0]
    area = m.find_vm_area(a)
    assert area.nested is not None and area.nested.nr_pages == 2
    m.vfree(a)
    # the page array went with it: only the two ranges wait on the purge list
    assert [ln.split()[-2:] for ln in m.proc_vmallocinfo().splitlines()] == \
        [["unpurged", "vm_area"]] * 2
    assert m.meminfo()["VmallocUsed"] == 0
    m.check()


def test_no_nested_array_at_512_pages(m):
    a = m.vmalloc(512 * PAGE)                       # 512 × 8 = 4096: kmalloc, not vmalloc
    assert m.find_vm_area(a).nested is None
    lines = m.proc_vmallocinfo().splitlines()
    assert len(lines) == 1 and "vpages" not in lines[0]
    assert m.meminfo()["VmallocUsed"] == 512 * 4


def test_nested_array_area_is_not_grouped_or_reset():
    m = Machine(patches=(1, 2, 3))
    a = m.module_alloc(600 * PAGE)
    area = m.find_vm_area(a)
    assert area.nested is not None
    assert not area.nested.flags & (vm.VM_GROUP_PAGES | VM_FLUSH_RESET_PERMS)
    assert area.flags & vm.VM_GROUP_PAGES


def test_vmalloc_gfp_passed_to_pages_has_nowarn_and_highmem():
    # module_alloc passes GFP_KERNEL; the per-page gfp is exactly GFP_GROUPED (spec §1.3)
    m = Machine(patches=(1, 2))
    assert m.vmalloc_node_range(PAGE, gfp=GFP_KERNEL, vm_flags=vm.VM_GROUP_PAGES) is not None
    assert m.stats()["grouped_bad_gfp"] == 0
    assert m.stats()["grouped_replenish"] == 1
    # a caller adding __GFP_ZERO cannot use the flag: WARN and NULL
    assert m.vmalloc_node_range(PAGE, gfp=GFP_KERNEL | 0x100,
                                vm_flags=vm.VM_GROUP_PAGES) is None
    assert m.stats()["grouped_bad_gfp"] == 1
    assert any("Unsupported GFP flags for VM_GROUP_PAGES" in w for w in m.warnings)
    m.check()


def test_vmallocinfo_area_spanning_two_nodes():
    # spec S8: NUMA_NO_NODE round-robin over the grouped caches gives one page per node
    m = Machine(nodes=2, patches=(1, 2, 3))
    m.vmalloc_node_range(PAGE, vm_flags=vm.VM_GROUP_PAGES, node=0, caller="fill0")
    m.vmalloc_node_range(PAGE, vm_flags=vm.VM_GROUP_PAGES, node=1, caller="fill1")
    a = m.module_alloc(2 * PAGE, caller="both")
    line = [ln for ln in m.proc_vmallocinfo().splitlines() if " both " in ln][0]
    assert line.startswith(f"0x{a:016x}-")
    assert line.endswith(" both pages=2 vmalloc N0=1 N1=1")
