"""Experiments: play one seeded workload on several kernels and compare the direct map.

``run_experiment`` builds the event list once, then for each kernel boots a
Machine with the same seed and calibration, applies the background pressure,
plays the phases, and records the DirectMap counters and flush/split counts.
"""

import csv
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from . import designs
from .machine import Machine
from .mm.gfp import ZONE_NAMES
from .snapshot import MachineSnapshot
from .units import memparse
from .workloads import scenario
from .workloads.from_proc import read_source

SCENARIOS = ("fedora-bpf", "modules", "bpf-load", "bpf-churn")
RAM_SIZES = ("4G", "8G", "16G", "32G", "64G")
RAM_SWEEP_CSV = scenario.DATA / "results" / "fedora-bpf-by-ram.csv"
RAM_SWEEP_FIELDS = ("node_mem", "baseline_4k_kb", "grouped_4k_kb", "reduction_pct",
                    "reduction_of_growth_pct", "baseline_splits_2m", "grouped_splits_2m",
                    "unmovable_pageblocks")
RUN_KEYS = ("DirectMap4k", "DirectMap2M", "DirectMap1G", "splits_2m", "splits_1g",
            "flush_tlb_all", "flush_tlb_range", "page_table_pages", "grouped_cache_pages",
            "grouped_replenish", "grouped_fallback", "MemFree", "VmallocUsed")


def build_events(name, seed, lsmod=None, programs=512, pages=1, loads=1000, test_tag_stride=1,
                 insns=None, rounds=1, per_process=False, selftest_processes=True):
    """The phases (name → event list) of a scenario; deterministic for a seed.

    ``per_process``: bpf-load's programs each in their own process; ``selftest_processes``:
    fedora-bpf's runners as processes (Calibration.selftest_processes).
    """
    rng = random.Random(seed)
    if per_process and name != "bpf-load":
        raise ValueError(f"per_process: only for bpf-load, not {name}")
    if name == "fedora-bpf":
        return scenario.fedora_bpf_events(rng, lsmod or scenario.DEFAULT_LSMOD,
                                          test_tag_stride=test_tag_stride,
                                          selftest_processes=selftest_processes)
    if name == "modules":
        if lsmod is None:
            raise ValueError("modules: --lsmod FILE is required")
        return scenario.modules_events(rng, lsmod)
    if name == "bpf-load":
        return scenario.bpf_load_events(programs, pages, insns, rounds, per_process)
    if name == "bpf-churn":
        return scenario.bpf_churn_events(loads, pages)
    raise ValueError(f"scenario: unknown {name!r}; choose from {', '.join(SCENARIOS)}")


PHASE_KEYS = ("DirectMap4k", "DirectMap2M", "DirectMap1G", "splits_2m", "splits_1g")


def _snapshot(m, keys=RUN_KEYS):
    mi, st = m.meminfo(), m.stats()
    out = {key: mi.get(key, st.get(key, 0)) for key in keys}
    return out


def run_kernel(design, phases, cal, seed, progress=None, machines=None, check=False):
    """Boot one kernel design (a registry name), apply pressure, play every phase.

    Returns its numbers: the end state, ``timeline`` (phase, DirectMap4k) and ``phases``
    (the DirectMap lines and split counts after each phase, the start first).
    ``machines``: a list to append the finished Machine to.  Machine.check() runs at the
    end; with ``check`` after boot and every phase too (``checks`` in the result counts them).
    """
    t0 = time.perf_counter()
    m = cal.machine(Machine, design, seed)
    start = "capture" if cal.capture is not None else "boot+pressure"
    timeline = [(start, m.meminfo()["DirectMap4k"])]
    after = [{"phase": start, **_snapshot(m, PHASE_KEYS)}]
    checks = 0
    for phase, events in phases.items():
        if check:
            m.check()
            checks += 1
        m.play(events, cal.churn_per_event, progress,
               kernel_churn_per_event=cal.kernel_churn_per_event,
               migrate_every=cal.migrate_every)
        timeline.append((phase, m.meminfo()["DirectMap4k"]))
        after.append({"phase": phase, **_snapshot(m, PHASE_KEYS)})
    m.check()
    if machines is not None:
        machines.append(m)
    result = _snapshot(m)
    result["timeline"] = timeline
    result["phases"] = after
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["warnings"] = len(m.warnings)
    if check:
        result["checks"] = checks + 1
    return result


def default_jobs():
    """Worker processes a run uses by default: both cores of a workshop laptop, at most 2.

    1 in Pyodide (JupyterLite): a browser has no processes.
    """
    if sys.platform == "emscripten":
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def parallel_map(fn, items, jobs=None):
    """``[fn(x) for x in items]``, in up to ``jobs`` worker processes when jobs > 1.

    The runs are independent and seeded, so the results are the serial ones, in order
    (tests/test_fast_paths.py).  ``fn`` and the items must pickle (module-level functions,
    plain data).  Serial for one item, ``jobs=1`` or in Pyodide.
    """
    items = list(items)
    jobs = default_jobs() if jobs is None else jobs
    if jobs <= 1 or len(items) <= 1 or sys.platform == "emscripten":
        return [fn(item) for item in items]
    with ProcessPoolExecutor(max_workers=min(jobs, len(items))) as pool:
        return list(pool.map(fn, items))


def _run_kernel_task(task):
    """run_kernel() in a worker process (no progress callback); with ``snapshot``, the
    finished machine's views too (gpalloc.snapshot.MachineSnapshot: a Machine does not
    travel between processes)."""
    design, phases, cal, seed, check, snapshot = task
    if not snapshot:
        return run_kernel(design, phases, cal, seed, check=check)
    kept = []
    result = run_kernel(design, phases, cal, seed, machines=kept, check=check)
    return result, MachineSnapshot.of(kept[0])


def kernel_runs(kernels):
    """Run label → design name: a mapping as given, or each name of a list as its own label."""
    runs = dict(kernels) if isinstance(kernels, dict) else {name: name for name in kernels}
    for design in runs.values():
        designs.design_class(design)   # an unknown name is refused before anything runs
    return runs


def run_experiment(name, seed=0, cal=None, kernels=None, progress_factory=None,
                   machines=None, check=False, jobs=1, **kw):
    """Run a scenario on each kernel; returns the JSON-ready dict the CLI prints.

    ``kernels``: design names (gpalloc.designs.names()), or a mapping run label →
    design name; default baseline (5.11) vs grouped (rfc).  Pass ``machines={}`` to
    get each kernel's finished Machine back in it, by run label.  ``check``: also
    Machine.check() after boot and every phase (run_kernel).  ``jobs``: run the kernels
    in that many worker processes (parallel_map; None = default_jobs()); a Machine does not
    travel between processes, so there ``machines`` gets each one's MachineSnapshot
    (gpalloc.snapshot: its views at the end of the run) instead.
    """
    kernels = kernel_runs(designs.BASELINE_VS_GROUPED if kernels is None else kernels)
    cal = cal or scenario.Calibration()
    extra = {"selftest_processes": cal.selftest_processes} if name == "fedora-bpf" else {}
    phases = build_events(name, seed, **kw, **extra)
    n_events = sum(len(v) for v in phases.values())
    meminfo = read_source(cal.capture)["meminfo"] if cal.capture is not None else \
        Machine(seed=seed, **cal.machine_kwargs()).meminfo()
    boot = {key: value for key, value in meminfo.items() if key.startswith("DirectMap")}
    kind = {"capture": cal.capture} if cal.capture is not None else {
        **cal.machine_kwargs(), **({"state": cal.state} if cal.state is not None else
                                   {"pressure": cal.pressure}),
        "churn_per_event": cal.churn_per_event,
        "kernel_churn_per_event": cal.kernel_churn_per_event, "migrate_every": cal.migrate_every}
    out = {"scenario": name, "seed": seed, "machine": {**kind, **boot},
           "workload": {"phases": {k: len(v) for k, v in phases.items()}, "events": n_events,
                        **{k: str(v) for k, v in kw.items() if v is not None}},
           "runs": {}}
    jobs = default_jobs() if jobs is None else jobs
    if jobs > 1 and len(kernels) > 1:
        snap = machines is not None
        results = parallel_map(_run_kernel_task, [(design, phases, cal, seed, check, snap)
                                                  for design in kernels.values()], jobs)
        for kname, result in zip(kernels, results, strict=True):
            if snap:
                result, machines[kname] = result
            out["runs"][kname] = result
            if progress_factory:   # each bar fills when its run comes back
                bar = progress_factory(kname, n_events)
                bar.update(n_events)
                bar.close()
    for kname, design in kernels.items():
        if kname in out["runs"]:
            continue
        progress = progress_factory(kname, n_events) if progress_factory else None
        try:
            kept = [] if machines is not None else None
            out["runs"][kname] = run_kernel(design, phases, cal, seed,
                                            progress.update if progress else None, kept, check)
            if kept:
                machines[kname] = kept[0]
        finally:
            if progress:
                progress.close()
    runs = out["runs"]
    # the reference run: the "baseline" role, else whichever run is the baseline's design
    reference = designs.BASELINE_VS_GROUPED["baseline"]
    base = "baseline" if "baseline" in runs else next(
        (label for label, design in kernels.items() if design == reference), None)
    if base is not None:
        b0 = boot["DirectMap4k"]
        for kname, run in runs.items():
            if kname != base:
                run["reduction_pct"], run["reduction_of_growth_pct"] = _reduction(
                    runs[base]["DirectMap4k"], run["DirectMap4k"], b0)
    if "baseline" in runs and "grouped" in runs:
        out["reduction_pct"] = runs["grouped"]["reduction_pct"]
        out["reduction_of_growth_pct"] = runs["grouped"]["reduction_of_growth_pct"]
    return out


def _reduction(base_4k, run_4k, boot_4k):
    """Percent fewer 4K pages than the baseline: all of them, and those made after boot."""
    total = round(100 * (1 - run_4k / base_4k), 2) if base_4k else 0.0
    grown = base_4k - boot_4k
    growth = round(100 * (1 - (run_4k - boot_4k) / grown), 2) if grown else 0.0
    return total, growth


def _ram_sweep_task(task):
    """One (size, run label) of ram_sweep(): the run, boot DirectMap4k, Unmovable pageblocks."""
    size, seed, label = task
    machines = {}
    r = run_experiment("fedora-bpf", seed=seed, cal=scenario.Calibration(node_mem=size),
                       kernels={label: designs.BASELINE_VS_GROUPED[label]}, machines=machines)
    blocks = machines[label].pagetypeinfo()
    top_zone = max(blocks, key=lambda nz: ZONE_NAMES.index(nz[1]))   # one node: its highest
    return r["runs"][label], r["machine"]["DirectMap4k"], blocks[top_zone]["Unmovable"]


def ram_sweep(sizes=RAM_SIZES, seed=0, progress_factory=None, jobs=1):
    """fedora-bpf on one-node machines of each RAM size, the rest of the calibration as is.

    One row per size (RAM_SWEEP_FIELDS).  ``unmovable_pageblocks`` is the baseline's
    /proc/pagetypeinfo Unmovable count, at the end of the run, in the zone GFP_KERNEL
    allocations come from (ZONE_NORMAL; ZONE_DMA32 on a machine with no memory above
    4 GiB): v5.11's unmovable order-0 pages come out of those pageblocks, so the
    baseline splits about that many 2 MiB regions once they are all in use.
    ``jobs`` > 1 (None = default_jobs()): every (size, kernel) run in worker processes,
    the largest first; the rows are the serial ones (tests/test_fast_paths.py).
    """
    jobs = default_jobs() if jobs is None else jobs
    if jobs > 1:
        return _ram_sweep_parallel(sizes, seed, jobs)   # no progress bars from workers
    rows = []
    for size in sizes:
        machines = {}
        r = run_experiment("fedora-bpf", seed=seed, cal=scenario.Calibration(node_mem=size),
                           progress_factory=progress_factory, machines=machines)
        base, grp = r["runs"]["baseline"], r["runs"]["grouped"]
        blocks = machines["baseline"].pagetypeinfo()
        top_zone = max(blocks, key=lambda nz: ZONE_NAMES.index(nz[1]))   # one node: its highest
        rows.append({"node_mem": size, "baseline_4k_kb": base["DirectMap4k"],
                     "grouped_4k_kb": grp["DirectMap4k"], "reduction_pct": r["reduction_pct"],
                     "reduction_of_growth_pct": r["reduction_of_growth_pct"],
                     "baseline_splits_2m": base["splits_2m"],
                     "grouped_splits_2m": grp["splits_2m"],
                     "unmovable_pageblocks": blocks[top_zone]["Unmovable"]})
    return rows


def _ram_sweep_parallel(sizes, seed, jobs):
    labels = ("baseline", "grouped")
    tasks = sorted(((size, seed, label) for size in sizes for label in labels),
                   key=lambda task: -memparse(task[0]))   # the longest runs first
    done = dict(zip(tasks, parallel_map(_ram_sweep_task, tasks, jobs), strict=True))
    rows = []
    for size in sizes:
        (base, boot_4k, blocks), (grp, _, _) = (done[(size, seed, label)] for label in labels)
        reduction = _reduction(base["DirectMap4k"], grp["DirectMap4k"], boot_4k)
        rows.append({"node_mem": size, "baseline_4k_kb": base["DirectMap4k"],
                     "grouped_4k_kb": grp["DirectMap4k"], "reduction_pct": reduction[0],
                     "reduction_of_growth_pct": reduction[1],
                     "baseline_splits_2m": base["splits_2m"],
                     "grouped_splits_2m": grp["splits_2m"],
                     "unmovable_pageblocks": blocks})
    return rows


def write_ram_sweep(rows, out):
    """Write ram_sweep() rows as CSV to a text stream."""
    w = csv.DictWriter(out, fieldnames=RAM_SWEEP_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)


def read_ram_sweep(path=RAM_SWEEP_CSV):
    """The committed ram_sweep() result (data/results/fedora-bpf-by-ram.csv) as rows."""
    rows = []
    with Path(path).open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != RAM_SWEEP_FIELDS:
            raise ValueError(f"{path}:1: header must be {','.join(RAM_SWEEP_FIELDS)}")
        for row in reader:
            try:
                rows.append({key: row[key] if key == "node_mem" else
                             float(row[key]) if "pct" in key else int(row[key])
                             for key in RAM_SWEEP_FIELDS})
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}:{reader.line_num}: {err}") from None
    return rows
