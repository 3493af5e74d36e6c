"""The Machine facade: the README example, input validation, determinism, check()."""

import contextlib
import io
import re
from pathlib import Path

import pytest

import gpalloc
from gpalloc import GFP_KERNEL, InvariantError, Machine
from gpalloc.mm.page_alloc import drain_all_pages

ROOT = Path(__file__).resolve().parent.parent
PAGE = 4096


def readme_python_blocks():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


# ---------------------------------------------------------------- README


def test_readme_example_runs_as_written():
    blocks = readme_python_blocks()
    assert blocks, "README.md has no python example"
    out = io.StringIO()
    ns = {}
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, "README.md", "exec"), ns)
    text = out.getvalue()
    for label in ("MemTotal:", "MemFree:", "VmallocUsed:", "DirectMap4k:", "DirectMap2M:",
                  "DirectMap1G:"):
        assert label in text
    m = ns["m"]
    assert isinstance(m, Machine)
    st = m.stats()
    # the example's module_alloc page came from a replenished 2 MiB block, was made RO+X,
    # and went back to the grouped cache at vfree (after its direct-map alias was reset)
    assert st["grouped_replenish"] == 1
    assert st["reset_perms_frees"] == 1
    assert st["grouped_cache_pages"] == 512
    assert m.find_vm_area(ns["a"]) is None
    assert m.warnings == []


def test_readme_meminfo_lines_have_kernel_layout():
    m = Machine(nodes=2, node_mem="4G", patches=(1, 2, 3), seed=0)
    for line in m.proc_meminfo().splitlines():
        # fs/proc/meminfo.c show_val_kb(): "%-16s%8lu kB" with the colon in the label
        assert re.fullmatch(r"[A-Za-z0-9_()]+:\s+\d+ kB", line), line
        label = line.split(":")[0] + ":"
        assert line.startswith(f"{label:<16}")
        assert len(line) >= 16 + 8 + 3


def test_readme_facade_methods_exist():
    m = Machine(nodes=2, node_mem="4G", patches=(1, 2, 3), seed=0)
    a = m.module_alloc(4096)
    assert m.set_vm_flush_reset_perms(a)
    assert m.set_memory_ro(a, 1) == 0
    assert m.set_memory_x(a, 1) == 0
    m.vfree(a)
    m.check()
    assert repr(m) == "Machine(nodes=2, node_mem='4G', patches=(1, 2, 3), seed=0)"


def test_package_exports():
    for name in ("Machine", "InvariantError", "KernelBUG", "NUMA_NO_NODE", "PAGE_KERNEL",
                 "VM_FLUSH_RESET_PERMS", "VM_GROUP_PAGES", "GFP_KERNEL", "parse_gfp"):
        assert hasattr(gpalloc, name)
    assert gpalloc.NUMA_NO_NODE == -1
    assert gpalloc.VM_FLUSH_RESET_PERMS == 0x100
    assert gpalloc.VM_GROUP_PAGES == 0x400


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("kw,name", [
    (dict(nodes=0), "nodes"),
    (dict(nodes=65), "nodes"),
    (dict(nodes="2"), "nodes"),
    (dict(node_mem="4Q"), "node_mem"),
    (dict(node_mem="258M"), "node_mem"),
    (dict(node_mem="1030M"), "node_mem"),
    (dict(node_mem="128M"), "node_mem"),
    (dict(node_mem=-1), "node_mem"),
    (dict(node_mem=True), "node_mem"),
    (dict(patches=(2,)), "patches"),
    (dict(patches=(1, 3)), "patches"),
    (dict(patches=(3,)), "patches"),
    (dict(patches=(4,)), "patches"),
    (dict(cpus_per_node=0), "cpus_per_node"),
    (dict(seed=-1), "seed"),
    (dict(list_head="page"), "list_head"),
    (dict(faults=("oom",)), "faults"),
    (dict(boot_4k="3M"), "boot_4k"),
])
def test_bad_machine_config_names_the_argument(kw, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        Machine(**kw)


@pytest.fixture
def m():
    return Machine(nodes=2, node_mem="4G", seed=0)


@pytest.mark.parametrize("call,name", [
    (lambda m: m.vmalloc(-1), "size"),
    (lambda m: m.vmalloc("4Q"), "size"),
    (lambda m: m.vmalloc(1.5), "size"),
    (lambda m: m.module_alloc(-4096), "size"),
    (lambda m: m.vmalloc_node_range(-1), "size"),
    (lambda m: m.vmalloc_node_range(4096, node=2), "node"),
    (lambda m: m.vmalloc_node_range(4096, node=-2), "node"),
    (lambda m: m.alloc_pages(GFP_KERNEL, 0, node=5), "node"),
    (lambda m: m.shrink_slab(nid=2), "node"),
    (lambda m: m.alloc_pages(1 << 23, 0), "gfp"),
    (lambda m: m.vmalloc_node_range(4096, gfp=1 << 24), "gfp"),
    (lambda m: m.shrink_slab(gfp=1 << 30), "gfp"),
    (lambda m: m.alloc_pages(GFP_KERNEL, 11), "order"),
    (lambda m: m.set_memory_ro(m.vmalloc(4096), -1), "numpages"),
    (lambda m: m.shrink_slab(priority=13), "priority"),
    (lambda m: setattr(m, "cpu", 4), "cpu"),
    (lambda m: m.vmalloc_node_range(4096, align=3), "align"),
    (lambda m: m.vmalloc_node_range(4096, vm_flags=0x10000), "vm_flags"),
])
def test_bad_call_names_the_argument(m, call, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call(m)
    m.check()                         # a refused call leaves the machine consistent


def test_sizes_accept_kernel_suffixes(m):
    a = m.vmalloc("8K")
    assert m.find_vm_area(a).nr_pages == 2
    b = m.vmalloc("1M")
    assert m.find_vm_area(b).nr_pages == 256
    assert Machine(node_mem="1G").meminfo()["MemTotal"] < 1 << 20
    assert Machine(node_mem=1 << 30).config["node_mem"] == 1 << 30


# ---------------------------------------------------------------- determinism


def _workload(m):
    out = []
    for i in range(12):
        m.cpu = i % m.k.nr_cpus
        a = m.module_alloc((i % 3 + 1) * PAGE)
        m.set_vm_flush_reset_perms(a)
        m.set_memory_ro(a, 1)
        m.set_memory_x(a, 1)
        out.append(a)
        b = m.vmalloc((i + 1) * 3 * PAGE)
        if i % 2:
            m.vfree(b)
        p = m.alloc_pages(GFP_KERNEL, i % 4)
        if i % 3:
            m.free_pages(p, i % 4)
    for a in out[::2]:
        m.module_memfree(a)
    m.shrink_slab(0, 2)
    return out


def _snapshot(m):
    return (m.meminfo(), m.stats(), m.proc_vmallocinfo(), m.proc_buddyinfo(),
            m.proc_meminfo(), m.warnings)


@pytest.mark.parametrize("patches", [(), (1, 2, 3)])
def test_same_seed_same_calls_same_results(patches):
    m1 = Machine(nodes=2, node_mem="4G", patches=patches, seed=7)
    m2 = Machine(nodes=2, node_mem="4G", patches=patches, seed=7)
    assert _workload(m1) == _workload(m2)
    assert _snapshot(m1) == _snapshot(m2)
    m1.check()


def test_seed_changes_the_module_load_offset():
    addrs = {Machine(seed=s).module_alloc(PAGE) for s in range(4)}
    assert len(addrs) > 1


# ---------------------------------------------------------------- check()


def _mixed(m):
    _workload(m)
    a = m.vmalloc_node_range(700 * PAGE, node=1)
    m.set_vm_flush_reset_perms(a)
    m.set_memory_ro(a, 10)
    m.vfree(a)
    m.drop_caches(3)


@pytest.mark.parametrize("kw", [dict(), dict(patches=(1, 2, 3)),
                                dict(patches=(1, 2, 3), list_head="struct_page"),
                                dict(patches=(1, 2, 3), nr_scanned_quirk=False)])
def test_check_passes_after_a_mixed_sequence(kw):
    m = Machine(nodes=2, node_mem="4G", seed=3, **kw)
    _mixed(m)
    m.check()
    drain_all_pages(m.k)
    m.check()


@pytest.fixture
def checked():
    m = Machine(nodes=2, node_mem="4G", patches=(1, 2, 3), seed=3)
    _mixed(m)
    m.module_alloc(PAGE)                 # leave something in the grouped cache
    m.check()
    return m


def test_check_detects_nr_free_pages_corruption(checked):
    checked.k.zones[1].nr_free_pages += 1
    with pytest.raises(InvariantError, match="NR_FREE_PAGES"):
        checked.check()


def test_check_detects_direct_map_counter_corruption(checked):
    checked.k.dmap.direct_pages_count[2] += 1       # one 2M entry too many
    with pytest.raises(InvariantError, match="DirectMap"):
        checked.check()


def test_check_detects_counter_moved_between_levels(checked):
    c = checked.k.dmap.direct_pages_count
    c[2] -= 1
    c[1] += 512                                      # RAM still covered, tables disagree
    with pytest.raises(InvariantError, match="DirectMap"):
        checked.check()


def test_check_detects_nr_free_corruption(checked):
    checked.k.zones[1].nr_free[3] += 1
    with pytest.raises(InvariantError, match="nr_free"):
        checked.check()


def test_check_detects_vmalloc_used_corruption(checked):
    checked.k.vmap.nr_vmalloc_pages += 1
    with pytest.raises(InvariantError, match="VmallocUsed"):
        checked.check()


def test_check_detects_list_lru_count_corruption(checked):
    lru = checked.k.design.grouped_pages_lru
    nid = next(n for n in range(2) if lru.node[n].nr_items)
    lru.node[nid].lru.nr_items += 1
    with pytest.raises(InvariantError, match="list_lru"):
        checked.check()


def test_check_detects_a_leaked_page(checked):
    page = checked.alloc_pages(GFP_KERNEL, 0)
    page.owner = None                                  # allocated but owned by nobody
    with pytest.raises(InvariantError, match="owner"):
        checked.check()


def test_check_detects_a_page_both_free_and_mapped():
    m = Machine()
    a = m.vmalloc(PAGE)
    page = m.find_vm_area(a).pages[0]
    page._refcount = 0                                 # as if freed while still mapped
    with pytest.raises(InvariantError):
        m.check()


def test_invariant_error_is_an_assertion_error():
    assert issubclass(InvariantError, AssertionError)


def test_stats_keys(m):
    st = m.stats()
    for key in ("splits_2m", "splits_1g", "flush_tlb_all", "flush_tlb_range", "lazy_purges",
                "page_table_pages"):
        assert key in st
    assert not any(key.startswith("grouped_") for key in st)   # v5.11 has no grouped cache
    st = Machine(nodes=2, node_mem="4G", seed=0, patches=(1, 2)).stats()
    for key in ("grouped_hits", "grouped_cache_pages", "nr_deferred", "nid_round_robin"):
        assert key in st
    assert st["nr_deferred"] == [0, 0]
    assert st["grouped_cache_pages_per_node"] == [0, 0]


def test_views_do_not_change_state(m):
    m.vmalloc(3 * PAGE)
    before = _snapshot(m)
    for _ in range(3):
        m.meminfo(), m.stats(), m.proc_vmallocinfo(), m.proc_buddyinfo(), m.proc_meminfo()
        m.check()
    assert _snapshot(m) == before


# ---------------------------------------------------------------- the facade's reporting

def test_addresses_print_as_hex_and_compute_as_ints():
    m = Machine(node_mem="512M", patches=(1, 2, 3), seed=0)
    for addr in (m.vmalloc(4096), m.vmalloc_node_range(8192), m.module_alloc(4096)):
        assert isinstance(addr, gpalloc.KernelAddress) and isinstance(addr, int)
        text = f"{int(addr):#x}"
        assert repr(addr) == str(addr) == f"{addr}" == text == repr([addr])[1:-1]
        assert f"{addr:d}" == str(int(addr)) and f"{addr:#x}" == text
        assert type(addr + 4096) is int and addr + 4096 == int(addr) + 4096
        assert m.find_vm_area(addr + 4095) is m.find_vm_area(addr)
    with pytest.warns(gpalloc.KernelWarning, match="allocation failure"):
        assert m.vmalloc(1 << 40) is None            # NULL stays None (and warn_alloc WARNs)


def test_a_warn_is_a_python_warning_each_time_it_happens():
    m = Machine(node_mem="512M", seed=0)
    addr = m.vmalloc(4096)
    with pytest.warns(gpalloc.KernelWarning, match=r"vfree\(\) bad address") as caught:
        m.vfree(addr + 8)
        m.vfree(addr + 8)
    assert len(caught) == 2 and all(w.filename == __file__ for w in caught)
    assert len(m.warnings) == 2                      # .warnings still has every one


def test_a_machine_that_hit_a_kernel_bug_refuses_every_later_call():
    m = Machine(node_mem="512M", patches=(1, 2), seed=0)
    ro = m.vmalloc_node_range(4096, vm_flags=gpalloc.VM_GROUP_PAGES)
    m.set_memory_ro(ro, 1)                          # read-only, no VM_FLUSH_RESET_PERMS
    with pytest.raises(gpalloc.KernelBUG, match="unable to handle page fault") as first:
        m.vfree(ro)
    for call in (m.check, m.meminfo, lambda: m.vmalloc(4096)):
        with pytest.raises(gpalloc.KernelBUG, match="this machine crashed earlier") as later:
            call()
        assert str(first.value) in str(later.value) and "build a new Machine" in str(later.value)
    Machine(node_mem="512M", patches=(1, 2), seed=0).check()   # other machines are unharmed
