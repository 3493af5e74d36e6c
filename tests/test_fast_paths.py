"""Every speed-up gives exactly what the readable path gives (issue 13).

Worker processes (gpalloc.experiments.parallel_map) give the serial results, in order;
each fast path beside a kernel-named function leaves the same state as that function.
"""

import sys

import pytest

from gpalloc import experiments
from gpalloc.experiments import (
    default_jobs,
    parallel_map,
    ram_sweep,
    read_ram_sweep,
    run_experiment,
)


def _without_seconds(result):
    for run in result["runs"].values():
        run.pop("seconds")
    return result


def _square(x):
    return x * x


def test_parallel_map_keeps_the_order_and_the_values():
    assert parallel_map(_square, range(7), jobs=2) == [x * x for x in range(7)]
    assert parallel_map(_square, [3], jobs=2) == [9]
    assert parallel_map(_square, [], jobs=2) == []


def test_default_jobs_is_one_in_pyodide_and_at_most_two(monkeypatch):
    assert 1 <= default_jobs() <= 2
    monkeypatch.setattr(sys, "platform", "emscripten")
    assert default_jobs() == 1
    # and parallel_map runs in this process even when asked for more
    assert parallel_map(_square, [1, 2], jobs=2) == [1, 4]


def test_kernels_in_worker_processes_give_the_serial_result():
    kw = dict(seed=3, kernels=["5.11", "rfc", "6.18"], programs=48, pages=2)
    serial = run_experiment("bpf-load", jobs=1, **kw)
    parallel = run_experiment("bpf-load", jobs=2, **kw)
    assert _without_seconds(parallel) == _without_seconds(serial)
    assert list(parallel["runs"]) == list(serial["runs"])


def test_parallel_runs_fill_each_progress_bar_once():
    seen = []

    class Bar:
        def __init__(self, name, total):
            self.name, self.total, self.done = name, total, 0
            seen.append(self)

        def update(self, n):
            self.done += n

        def close(self):
            pass

    r = run_experiment("bpf-load", seed=0, programs=16, jobs=2, progress_factory=Bar)
    assert [b.name for b in seen] == list(r["runs"])
    assert all(b.done == b.total == r["workload"]["events"] for b in seen)


def test_machines_from_worker_processes_are_snapshots_of_the_same_machines():
    import numpy as np

    from gpalloc.snapshot import MachineSnapshot
    machines, snaps = {}, {}
    serial = run_experiment("bpf-load", seed=0, programs=16, jobs=1, machines=machines)
    parallel = run_experiment("bpf-load", seed=0, programs=16, jobs=2, machines=snaps)
    assert _without_seconds(parallel) == _without_seconds(serial)
    assert set(snaps) == set(machines) == set(serial["runs"])
    for label, m in machines.items():
        s = snaps[label]
        assert isinstance(s, MachineSnapshot)
        assert np.array_equal(s.direct_map_regions(), m.direct_map_regions())
        assert s.meminfo() == m.meminfo() and s.pagetypeinfo() == m.pagetypeinfo()


@pytest.mark.slow
def test_serial_ram_sweep_row_is_the_committed_row():
    """The parallel sweep is pinned to the CSV by tests/test_ram_sweep.py; this pins the
    serial path (one size)."""
    assert ram_sweep(("4G",), seed=0, jobs=1) == read_ram_sweep()[:1]


def test_ram_sweep_parallel_puts_the_largest_runs_first(monkeypatch):
    seen = []

    def fake_map(fn, tasks, jobs):  # noqa: ARG001 - parallel_map's signature
        seen.extend(tasks)
        return [({"DirectMap4k": 4096 if label == "baseline" else 2048, "splits_2m": 1},
                 1024, 7) for _, _, label in tasks]

    monkeypatch.setattr(experiments, "parallel_map", fake_map)
    rows = ram_sweep(("4G", "16G"), seed=0, jobs=2)
    assert [t[0] for t in seen] == ["16G", "16G", "4G", "4G"]
    assert [r["node_mem"] for r in rows] == ["4G", "16G"]
    assert rows[0]["reduction_pct"] == 50.0 and rows[0]["unmovable_pageblocks"] == 7


# ---------------------------------------------------------------- fast paths beside the kernel's

def _state(m):
    """Everything a run's numbers come from: pages, free lists, pcp lists, direct map, vmap."""
    k = m.k
    pages = {pfn: (p.nid, p.zid, p._refcount, p.page_type, p.private, p.owner, p.order,
                   p.pcp_mt, p.contents) for pfn, p in sorted(k.pages._pages.items())}
    zones = [(z.nr_free_pages, list(z.nr_free), [[list(lst) for lst in o] for o in z.free_area],
              [list(r) for r in z.pristine], dict(z.pageblock_mt),
              {cpu: (p.count, [list(lst) for lst in p.lists]) for cpu, p in z.pcp.items()})
             for z in k.zones]
    vm = k.vmap
    return (pages, zones, dict(k.stat), k.dmap.direct_pages_count, dict(k.dmap.pte),
            dict(k.dmap.pmd), dict(k.dmap.gb), list(vm.starts), list(vm.free_starts),
            dict(vm.free_end), m.meminfo(), k.rng.getstate())


def _workload(m, rng, n=400):
    live = []
    for _ in range(n):
        r = rng.random()
        if r < 0.4 or not live:
            size = rng.randint(1, 24) * 4096
            a = m.module_alloc(size) if rng.random() < 0.5 else m.vmalloc(size)
            if a is not None:
                m.set_vm_flush_reset_perms(a)
                m.set_memory_ro(a, size // 4096)
                live.append(a)
        elif r < 0.8:
            m.vfree(live.pop(rng.randrange(len(live))))
        else:
            m.cpu = rng.randrange(m.k.nr_cpus)
    return live


def _slow_paths(monkeypatch):
    """Undo every fast path: the reading paths only."""
    from gpalloc.designs import v5_11
    from gpalloc.mm import page as page_mod
    from gpalloc.mm import vmalloc as vmalloc_mod
    from gpalloc.state import Kernel

    init = page_mod.PageStore.__init__

    def plain_init(self, layout):
        init(self, layout)
        del self.pfn_to_page, self.peek           # the methods again
        self._pages = dict(self._pages)          # and a plain dict behind them

    monkeypatch.setattr(page_mod.PageStore, "__init__", plain_init)
    monkeypatch.setattr(Kernel, "zone_of", Kernel.page_zone)
    monkeypatch.setattr(vmalloc_mod, "_find_fit", _plain_find_fit)
    monkeypatch.setattr(vmalloc_mod, "vmalloc_page_gfp", vmalloc_mod._vmalloc_page_gfp)
    linux_init = v5_11.Linux511.__init__

    def no_direct_rmqueue(self, **options):
        linux_init(self, **options)
        for name in ("rmqueue", "vm_area_alloc_pages", "vm_area_free_pages"):
            self.__dict__.pop(name, None)

    monkeypatch.setattr(v5_11.Linux511, "__init__", no_direct_rmqueue)


def _plain_find_fit(vm, size, align, vstart, vend):
    """vmalloc._find_fit as it read before issue 13."""
    from bisect import bisect_right

    from gpalloc.mm.vmalloc import _align_up
    starts, ends = vm.free_starts, vm.free_end
    i = max(bisect_right(starts, vstart) - 1, 0)
    while i < len(starts) and starts[i] < vend:
        gap_start = starts[i]
        addr = _align_up(max(gap_start, vstart), align)
        if addr + size <= min(ends[gap_start], vend):
            return addr
        i += 1
    return None


@pytest.mark.parametrize("design", ["5.11", "rfc", "6.18"])
def test_fast_paths_leave_the_state_the_reading_paths_leave(monkeypatch, design):
    from gpalloc import Machine

    def run():
        m = Machine(nodes=2, node_mem="1G", design=design, seed=5)
        m.set_memory_pressure(0.4)
        _workload(m, __import__("random").Random(5))
        m.check()
        return _state(m)

    fast = run()
    with monkeypatch.context() as mp:
        _slow_paths(mp)
        slow = run()
    assert fast == slow


def test_the_reading_paths_are_really_used_when_the_fast_ones_are_undone(monkeypatch):
    from gpalloc import Machine
    _slow_paths(monkeypatch)
    m = Machine(node_mem="1G", seed=0)
    assert type(m.k.pages._pages) is dict and "pfn_to_page" not in vars(m.k.pages)
    assert not {"rmqueue", "vm_area_alloc_pages", "vm_area_free_pages"} & set(vars(m.k.design))


@pytest.mark.parametrize("design", ["5.11", "rfc"])
def test_vmalloc_page_runs_are_taken_where_pages_are_plain(design):
    from gpalloc import Machine
    from gpalloc.designs.v5_11 import Linux511
    d = Machine(node_mem="1G", design=design, seed=0).k.design
    assert vars(d)["vm_area_alloc_pages"].__func__ is Linux511._vm_area_alloc_order0_run
    assert vars(d)["vm_area_free_pages"].__func__ is Linux511._vm_area_free_order0_run


def test_vmalloc_page_runs_are_not_taken_by_designs_with_their_own_allocator():
    from gpalloc import Machine
    assert "vm_area_alloc_pages" not in vars(Machine(node_mem="1G", design="6.18", seed=0).k.design)


def test_memmap_fast_path_is_pfn_to_page():
    from gpalloc import Machine
    m = Machine(node_mem="1G", seed=0)
    store = m.k.pages
    pfn = m.k.max_pfn - 1
    assert store.peek(pfn) is None and type(store).peek(store, pfn) is None
    page = store.pfn_to_page(pfn)
    assert type(store).pfn_to_page(store, pfn) is page and store.peek(pfn) is page
    assert (page.pfn, page.nid, page.zid) == (pfn, 0, 1)
    with pytest.raises(ValueError, match="outside RAM"):
        store.pfn_to_page(m.k.max_pfn)
    assert store.peek(m.k.max_pfn) is None


def test_zone_of_is_page_zone_for_every_boundary():
    from gpalloc import Machine
    m = Machine(nodes=3, node_mem="3G", seed=0)
    k = m.k
    edges = sorted({p for _, _, s, e in k.layout.zone_spans for p in (s, e)})
    for pfn in [0, 1, 511, 512] + [e + d for e in edges for d in (-513, -1, 0, 1, 512)]:
        if 0 <= pfn < k.max_pfn:
            assert k.zone_of(pfn) is k.page_zone(pfn), pfn
            assert k.zone_of(pfn) is k.page_zone(pfn), pfn   # and from the region cache
        else:
            with pytest.raises(ValueError):
                k.zone_of(pfn)


def test_zone_of_never_caches_a_region_a_zone_boundary_cuts():
    from gpalloc.mm.mmzone import Layout
    from gpalloc.state import Kernel
    layout = Layout(1, 1 << 18)
    layout.zone_spans = [(0, 0, 0, 1000), (0, 1, 1000, 1 << 18)]   # cut inside region 1
    layout.pfn_node_zone = lambda pfn: (0, 0 if pfn < 1000 else 1)
    k = Kernel.__new__(Kernel)
    k.layout, k.max_pfn = layout, 1 << 18
    k._zone_by = {(0, 0): "dma", (0, 1): "dma32"}
    k._region_zone = {}
    k._cut_regions = frozenset({1000 >> 9})
    assert [k.zone_of(p) for p in (999, 1000, 998, 1001)] == ["dma", "dma32", "dma", "dma32"]


def test_gfp_fast_paths_are_the_checked_ones():
    from gpalloc.mm.gfp import __GFP_ZERO, GFP_KERNEL, gfp_t
    g = GFP_KERNEL | __GFP_ZERO
    assert type(g) is gfp_t and int(g) == int(GFP_KERNEL) | 0x100
    assert gfp_t(g) == g and type(gfp_t(g)) is gfp_t
    assert GFP_KERNEL | 0x100 == g and 0x100 | GFP_KERNEL == g
    with pytest.raises(ValueError):
        GFP_KERNEL | (1 << 30)


def test_find_fit_is_the_plain_form():
    import random

    from gpalloc.mm import vmalloc as v
    rng = random.Random(1)
    for _ in range(200):
        vm = v.vmap_state(4)
        cuts = sorted(rng.sample(range(1, 4000), 40))
        vm.free_starts = cuts[0::2]
        vm.free_end = {s: e for s, e in zip(cuts[0::2], cuts[1::2], strict=True)}
        size, align = rng.randint(1, 300), 1 << rng.randint(0, 8)
        lo = rng.randint(0, 3000)
        hi = lo + rng.randint(1, 2000)
        assert v._find_fit(vm, size, align, lo, hi) == _plain_find_fit(vm, size, align, lo, hi)


def test_vmalloc_page_gfp_memo_is_the_function():
    from gpalloc.mm import gfp as g
    from gpalloc.mm import vmalloc as v
    for mask in (g.GFP_KERNEL, g.GFP_KERNEL_ACCOUNT | g.__GFP_ZERO, g.GFP_DMA32, g.GFP_DMA):
        assert v.vmalloc_page_gfp(mask) == v._vmalloc_page_gfp(mask)
        assert v.vmalloc_page_gfp(mask) == v.vmalloc_page_gfp(int(mask))


# ---------------------------------------------------------------- widget memo

def test_a_widget_setting_seen_before_is_shown_from_the_memo(monkeypatch):
    import numpy as np

    from gpalloc import widgets
    p = widgets.pressure_explorer(seed=0)
    computed = []
    real = widgets.PressureExplorer._compute
    monkeypatch.setattr(widgets.PressureExplorer, "_compute",
                        lambda self: computed.append(1) or real(self))
    level = p.controls["level"]
    level.value = 0.5
    first = (p.machine, dict(p.values), p.table.value, p.header.value, p.image.value,
             p.message.value)
    level.value = 0.25
    level.value = 0.5
    assert len(computed) == 2                       # 0.5 and 0.25, not 0.5 again
    again = (p.machine, dict(p.values), p.table.value, p.header.value, p.image.value,
             p.message.value)
    assert again[0] is first[0] and again[1:] == first[1:]
    # and the figure shows the remembered machine again
    codes = p.machine.direct_map_regions()
    shown = np.asarray(p.figure.axes[0].images[0].get_array()).reshape(-1)[:codes.size]
    assert np.array_equal(shown, codes)
    # a new seed is a new run
    p.controls["seed"].value = 1
    assert len(computed) == 3 and p.values["seed"] == 1


def test_the_widget_memo_keeps_at_most_memo_size_settings():
    from gpalloc import widgets
    p = widgets.numa_explorer(seed=0)
    for n in range(1, 2 + p.MEMO_SIZE):
        p.controls["allocs"].value = 16 * n
    assert len(p._memo) == p.MEMO_SIZE
    assert (2, 16, p.controls["cpus"].value, 0) not in p._memo   # the oldest went first


def test_cli_jobs_prints_what_one_job_prints(capsys):
    from gpalloc.cli import main
    args = ["experiment", "bpf-load", "--programs", "16", "--quiet", "--kernel", "5.11",
            "--kernel", "6.18"]
    assert main([*args, "--jobs", "1"]) == 0
    one = capsys.readouterr().out
    assert main([*args, "--jobs", "2"]) == 0
    assert capsys.readouterr().out == one and "6.18" in one


def test_cli_refuses_a_bad_jobs_count(capsys):
    from gpalloc.cli import main
    with pytest.raises(SystemExit) as err:
        main(["experiment", "bpf-load", "--jobs", "0"])
    assert err.value.code == 2
    assert "--jobs: must be > 0 (got 0)" in capsys.readouterr().err
