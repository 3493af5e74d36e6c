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


def test_machines_wanted_means_the_runs_stay_in_this_process():
    machines = {}
    r = run_experiment("bpf-load", seed=0, programs=16, jobs=2, machines=machines)
    assert set(machines) == set(r["runs"])
    assert machines["baseline"].meminfo()["DirectMap4k"] == r["runs"]["baseline"]["DirectMap4k"]


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
