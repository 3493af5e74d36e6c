"""gpalloc benchmarks: ``make bench`` runs ``python -m benchmarks``.

A benchmark is a function ``fn(seed) -> list of rows``; a row is
``(case, metric, value, note)`` with ``value`` already formatted and ``note``
starting with PASS/FAIL where the benchmark has a bound.  Register one with
:func:`register` (or append ``(name, fn)`` to :data:`BENCHMARKS`); :func:`main`
runs them in registration order, prints the parameters, then one plain-text
table, and exits 1 if any row FAILs.  ``python -m benchmarks NAME ...`` runs a
subset.

Built in (each a few seconds):

* ``page_ops``: vmalloc(4096) + set_vm_flush_reset_perms + set_memory_ro +
  set_memory_x + vfree of 1-page areas per second, plain v5.11 and RFC 1-3
  (module_alloc, so the pages come from the grouped cache).
* ``machine_create``: Machine(nodes=8, node_mem="128G") creation time and memory,
  in a fresh subprocess each (bounds: < 2 s, < 100 MB), next to nodes=1, "4G".
* ``check_after_ops``: Machine.check() time after 10,000 random operations.
* ``fedora_bpf``: the fedora-bpf experiment (both kernels): wall time (bound < 60 s)
  and kernel events per second.
* ``bpf_vs_kernel``: the model's BPF load+free against this kernel's socket-filter
  load+JIT+free, timed in the same run (ratio, bound ≤ 1.0; Linux only, skipped elsewhere).
* ``scale``: per-event cost of bpf-load on a 1 TiB / 8-node machine against 4 GiB (≤ 1.5).
* ``widgets``: headless widget latency, from setting a control to its output (≤ 100 ms).
"""

import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import gpalloc
from gpalloc import Machine
from gpalloc.tables import text_table

SEED = 0
BENCHMARKS = []   # [(name, fn)], in the order they run


def register(name):
    """Decorator: add ``fn(seed) -> rows`` to :data:`BENCHMARKS` under ``name``."""
    def deco(fn):
        if any(n == name for n, _ in BENCHMARKS):
            raise ValueError(f"benchmark {name!r} is registered twice")
        BENCHMARKS.append((name, fn))
        return fn
    return deco


def _header(seed, names):
    return [
        "gpalloc benchmarks",
        f"  gpalloc {gpalloc.__version__}, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs",
        f"  seed={seed}, clock=time.perf_counter, benchmarks: {', '.join(names)}",
    ]


def format_table(rows):
    """Plain-text table of (benchmark, case, metric, value, note) rows."""
    head = ("benchmark", "case", "metric", "value", "note")
    return text_table([head, *rows], "<<<><", sep="  ", rule=True)


def main(argv=None):
    """Run every registered benchmark (or those named on the command line); 1 on any FAIL."""
    argv = sys.argv[1:] if argv is None else argv
    known = [n for n, _ in BENCHMARKS]
    unknown = [a for a in argv if a not in known]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {known}", file=sys.stderr)
        return 2
    chosen = [(n, fn) for n, fn in BENCHMARKS if not argv or n in argv]
    print("\n".join(_header(SEED, [n for n, _ in chosen])))
    rows = []
    t0 = time.perf_counter()
    for name, fn in chosen:
        for case, metric, value, note in fn(SEED):
            rows.append((name, case, metric, value, note))
    print()
    print(format_table(rows))
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    return 1 if any(str(r[4]).startswith("FAIL") for r in rows) else 0


# ---------------------------------------------------------------- built-in benchmarks

PAGE_OPS_ITERATIONS = 20_000
PAGE_OPS_CONFIG = dict(nodes=1, node_mem="4G")


@register("page_ops")
def bench_page_ops(seed):
    """1-page alloc + set_vm_flush_reset_perms + ro + x + vfree: iterations and calls per second."""
    rows = []
    for patches, alloc in (((), "vmalloc"), ((1, 2, 3), "module_alloc")):
        m = Machine(**PAGE_OPS_CONFIG, patches=patches, seed=seed)
        allocate = getattr(m, alloc)
        dm0 = m.meminfo()["DirectMap4k"]
        t0 = time.perf_counter()
        for _ in range(PAGE_OPS_ITERATIONS):
            a = allocate(4096)
            m.set_vm_flush_reset_perms(a)
            m.set_memory_ro(a, 1)
            m.set_memory_x(a, 1)
            m.vfree(a)
        dt = time.perf_counter() - t0
        m.check()
        case = f"patches={patches} {alloc}"
        note = (f"{PAGE_OPS_ITERATIONS} iterations in {dt:.2f} s; "
                f"DirectMap4k +{m.meminfo()['DirectMap4k'] - dm0} kB")
        rows.append((case, "iterations/s", f"{PAGE_OPS_ITERATIONS / dt:,.0f}", note))
        rows.append((case, "calls/s", f"{5 * PAGE_OPS_ITERATIONS / dt:,.0f}",
                     "5 Machine calls per iteration"))
    return rows


CREATE_BOUND_S, CREATE_BOUND_MB = 2.0, 100.0
CREATE_REPEATS = 3
_CREATE_CHILD = r"""
import gc, json, os, resource, sys, time
nodes, node_mem, seed = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
from gpalloc import Machine

def rss_kb():   # current RSS (Linux); elsewhere fall back to the peak
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

gc.collect()
rss0, peak0 = rss_kb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
m = Machine(nodes=nodes, node_mem=node_mem, seed=seed)
t1 = time.perf_counter()
rss1, peak1 = rss_kb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
del m
gc.collect()
import tracemalloc
tracemalloc.start()
m = Machine(nodes=nodes, node_mem=node_mem, seed=seed)
current, peak = tracemalloc.get_traced_memory()
print(json.dumps({"seconds": t1 - t0, "rss_added_kb": rss1 - rss0,
                  "maxrss_added_kb": peak1 - peak0, "heap_current": current,
                  "heap_peak": peak}))
"""


def _child(nodes, node_mem, seed):
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p))
    out = subprocess.run([sys.executable, "-c", _CREATE_CHILD, str(nodes), node_mem, str(seed)],
                         capture_output=True, text=True, env=env, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@register("machine_create")
def bench_machine_create(seed):
    """Machine creation in fresh processes: time (median of 3), RSS added, Python heap."""
    rows = []
    for nodes, node_mem, bounded in ((1, "4G", False), (8, "128G", True)):
        runs = [_child(nodes, node_mem, seed) for _ in range(CREATE_REPEATS)]
        secs = statistics.median(r["seconds"] for r in runs)
        rss_mb = max(max(r["rss_added_kb"], r["maxrss_added_kb"]) for r in runs) / 1024
        heap_mb = max(r["heap_peak"] for r in runs) / 2**20
        case = f"nodes={nodes} node_mem={node_mem}"
        time_note = mem_note = ""
        if bounded:
            time_note = ("PASS" if secs < CREATE_BOUND_S else "FAIL") + f" (< {CREATE_BOUND_S} s)"
            mem_note = ("PASS" if max(rss_mb, heap_mb) < CREATE_BOUND_MB else "FAIL") + \
                f" (< {CREATE_BOUND_MB:.0f} MB)"
        rows.append((case, "create ms", f"{secs * 1e3:.1f}",
                     f"{time_note} median of {CREATE_REPEATS} processes".strip()))
        rows.append((case, "RSS added MB", f"{rss_mb:.1f}",
                     f"{mem_note} /proc/self/statm and ru_maxrss deltas, worst of "
                     f"{CREATE_REPEATS}".strip()))
        rows.append((case, "heap peak MB", f"{heap_mb:.2f}",
                     f"{mem_note} tracemalloc".strip()))
    return rows


CHECK_OPS = 10_000
CHECK_CONFIG = dict(nodes=2, node_mem="4G")
CHECK_REPEATS = 5


def random_ops(m, n, rng):
    """n random operations (areas, permissions, frees, page allocations); returns live areas."""
    live, held = [], []
    for _ in range(n):
        r = rng.random()
        if r < 0.30 and len(live) < 500:
            size = rng.randint(1, 16) * 4096
            a = m.module_alloc(size) if rng.random() < 0.5 else m.vmalloc(size)
            if a is not None:
                live.append((a, size // 4096))
        elif r < 0.50 and live:
            a, n_pages = live[rng.randrange(len(live))]
            m.set_vm_flush_reset_perms(a)
            m.set_memory_ro(a, n_pages)
            m.set_memory_x(a, rng.randint(1, n_pages))
        elif r < 0.75 and live:
            a, _ = live.pop(rng.randrange(len(live)))
            m.vfree(a)
        elif r < 0.90:
            order = rng.randint(0, 4)
            page = m.alloc_pages(order=order)
            if page is not None:
                held.append((page, order))
        elif held:
            page, order = held.pop(rng.randrange(len(held)))
            m.free_pages(page, order)
        if rng.random() < 0.02:
            m.cpu = rng.randrange(m.k.nr_cpus)
    return live


@register("check_after_ops")
def bench_check_after_ops(seed):
    """Machine.check() time after 10,000 random operations (best and median of 5)."""
    rows = []
    for patches in ((), (1, 2, 3)):
        m = Machine(**CHECK_CONFIG, patches=patches, seed=seed)
        t0 = time.perf_counter()
        live = random_ops(m, CHECK_OPS, random.Random(seed))
        ops_s = time.perf_counter() - t0
        times = []
        for _ in range(CHECK_REPEATS):
            t0 = time.perf_counter()
            m.check()
            times.append(time.perf_counter() - t0)
        case = f"patches={patches} nodes={CHECK_CONFIG['nodes']} {CHECK_CONFIG['node_mem']}"
        rows.append((case, "check() ms", f"{min(times) * 1e3:.1f}",
                     f"best of {CHECK_REPEATS}; median {statistics.median(times) * 1e3:.1f} ms; "
                     f"{len(m.k.pages):,} struct pages touched, {len(live)} live areas"))
        rows.append((case, f"{CHECK_OPS:,} ops s", f"{ops_s:.2f}",
                     f"{CHECK_OPS / ops_s:,.0f} ops/s"))
    return rows


@register("fedora_bpf")
def bench_fedora_bpf(seed):
    """The fedora-bpf experiment, both kernels, as ``gpalloc experiment fedora-bpf`` runs it
    (default --jobs): wall time (bound < 60 s), events/s, and each run's own seconds."""
    from gpalloc.experiments import default_jobs, run_experiment
    jobs = default_jobs()
    t0 = time.perf_counter()
    result = run_experiment("fedora-bpf", seed=seed, jobs=jobs)
    dt = time.perf_counter() - t0
    events = result["workload"]["events"] * len(result["runs"])
    per_run = sum(run["seconds"] for run in result["runs"].values())
    case = "fedora-bpf, baseline + grouped"
    return [(case, "wall time", f"{dt:.1f} s",
             ("PASS (< 60 s)" if dt < 60 else "FAIL (≥ 60 s)") + f"; --jobs {jobs}"),
            (case, "events/s", f"{events / dt:,.0f}",
             f"{events:,} events over the wall time; reduction_pct {result['reduction_pct']}"),
            (case, "events/s per process", f"{events / per_run:,.0f}",
             "events over the runs' own seconds (one core each)")]


# ---------------------------------------------------------------- issue 13's ratios, one run each

BPF_OPS = 2000
BPF_INSNS = 800    # one JIT page in a 6.18 pack (data/measurements/README.md)
BPF_RATIO_BOUND = 1.0


def _model_bpf_seconds(seed, n):
    """The model's cost of loading, JITing and freeing n one-page programs (v5.11 path)."""
    from gpalloc.kernel.bpf.core import bpf_prog_load, bpf_prog_put
    from gpalloc.kernel.workqueue import flush_deferred
    from gpalloc.workloads.scenario import jited_bytes_for_pages
    m = Machine(nodes=1, node_mem="4G", seed=seed)
    jited = jited_bytes_for_pages(1)
    t0 = time.perf_counter()
    for _ in range(n):
        bpf_prog_put(m.k, bpf_prog_load(m.k, 64, jited))
        flush_deferred(m.k)
    return time.perf_counter() - t0


def _kernel_bpf_seconds(n):
    """This kernel's cost of SO_ATTACH_FILTER (load + JIT) and close (free) of n filters."""
    from gpalloc.live.bpf import SockFprog, open_filter_socket
    fprog = SockFprog(BPF_INSNS)
    t0 = time.perf_counter()
    for _ in range(n):
        open_filter_socket(fprog).close()
    return time.perf_counter() - t0


@register("bpf_vs_kernel")
def bench_bpf_vs_kernel(seed):
    """The model's BPF load+free against the real kernel's socket-filter load+JIT+free."""
    model = _model_bpf_seconds(seed, BPF_OPS)
    row = ("1-page program", "model µs/op", f"{model / BPF_OPS * 1e6:.1f}",
           f"{BPF_OPS} loads + frees, v5.11 design")
    if platform.system() != "Linux":
        return [row, ("1-page program", "ratio", "-", "SKIP: needs Linux (SO_ATTACH_FILTER)")]
    try:
        real = _kernel_bpf_seconds(BPF_OPS)
    except OSError as err:
        return [row, ("1-page program", "ratio", "-", f"SKIP: {err}")]
    ratio = model / real
    return [row, ("1-page program", "kernel µs/op", f"{real / BPF_OPS * 1e6:.1f}",
                  f"socket + SO_ATTACH_FILTER ({BPF_INSNS} insns) + close"),
            ("1-page program", "model / kernel", f"{ratio:.2f}",
             ("PASS" if ratio <= BPF_RATIO_BOUND else "FAIL") + f" (≤ {BPF_RATIO_BOUND})")]


SCALE_BOUND = 1.5
SCALE_PROGRAMS = 512


def _bpf_load_per_event(seed, **machine):
    from gpalloc.workloads.events import BpfLoad
    from gpalloc.workloads.scenario import jited_bytes_for_pages
    m = Machine(seed=seed, **machine)
    events = [BpfLoad(64, jited_bytes_for_pages(1)) for _ in range(SCALE_PROGRAMS)]
    t0 = time.perf_counter()
    m.play(events)
    return (time.perf_counter() - t0) / SCALE_PROGRAMS


@register("scale")
def bench_scale(seed):
    """Per-event cost of bpf-load on a 1 TiB / 8-node machine against a 4 GiB one."""
    small = _bpf_load_per_event(seed, nodes=1, node_mem="4G")
    big = _bpf_load_per_event(seed, nodes=8, node_mem="128G")
    ratio = big / small
    return [("bpf-load 512 x 1 page", "µs/event 4 GiB", f"{small * 1e6:.1f}", ""),
            ("bpf-load 512 x 1 page", "µs/event 1 TiB", f"{big * 1e6:.1f}", "8 nodes x 128 GiB"),
            ("bpf-load 512 x 1 page", "1 TiB / 4 GiB", f"{ratio:.2f}",
             ("PASS" if ratio <= SCALE_BOUND else "FAIL") + f" (≤ {SCALE_BOUND})")]


WIDGET_BOUND_MS = 100.0
WIDGET_REPEATS = 5


def _latency(panel, control, values):
    """Median ms from setting a control's value to the panel's output being produced."""
    times = []
    for value in values:
        t0 = time.perf_counter()
        if control == "run":
            panel.refresh()
        elif control == "reveal":
            panel.reveal()
        else:
            panel.controls[control].value = value
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


@register("widgets")
def bench_widgets(seed):
    """Headless widget update latency: set a control, wait for its output (bound 100 ms)."""
    from gpalloc import widgets
    cases = [
        ("gfp_flags_explorer", widgets.gfp_flags_explorer, "preset",
         ["GFP_KERNEL_ACCOUNT", "GFP_KERNEL", "GFP_ATOMIC", "GFP_NOFS", "GFP_KERNEL"]),
        ("pressure_explorer", widgets.pressure_explorer, "level", [0.2, 0.5, 0.8, 1.0, 0.0]),
        ("numa_explorer", widgets.numa_explorer, "nodes", [1, 3, 4, 8, 2]),
        ("experiment_dashboard", lambda: widgets.experiment_dashboard(autorun=False), "run",
         [None] * 3),
        ("predict_reveal", lambda: widgets.predict_reveal("q?", lambda: 42), "reveal",
         [None] * WIDGET_REPEATS),
    ]
    rows = []
    for name, build, control, values in cases:
        ms = _latency(build(), control, values)
        rows.append((name, f"{control} ms (median)", f"{ms:.1f}",
                     ("PASS" if ms <= WIDGET_BOUND_MS else "FAIL") + f" (≤ {WIDGET_BOUND_MS:.0f})"))
    return rows
