"""``python -m gpalloc`` / ``gpalloc``: run the experiments from a shell.

OSTEP-style: every run prints its parameters first, so a pasted output names the
run; the same seed gives the same numbers.  ``--json`` prints one JSON object
instead of the table; a tqdm progress bar shows on a terminal unless ``--quiet``.
A bad value is one line, ``gpalloc: error: --flag: what is wrong (got VALUE)``, status 2
(gpalloc.usage).  A run estimated (gpalloc.budget) to take more than a few seconds or a
few hundred MB prints its estimate and shows progress at once; one past the bounds is
refused unless ``--force``.  Ctrl-C stops a run with a one-line summary, status 130.
"""

import argparse
import io
import json
import os
import sys
import time

from . import budget, designs, sensitivity, usage
from .bug import InvariantError
from .experiments import (
    RAM_SIZES,
    SCENARIOS,
    default_jobs,
    ram_sweep,
    run_experiment,
    write_ram_sweep,
)
from .live import cli as live_cli
from .machine import Machine
from .quiz import KINDS, quiz
from .tables import text_table
from .units import memparse
from .validate import VALIDATION_DESIGN, VALIDATION_SET, format_validation, validate
from .workloads.machine_state import machine_state_names
from .workloads.scenario import Calibration

TABLE_ROWS = (
    ("DirectMap4k", "DirectMap4k (kB)"), ("DirectMap2M", "DirectMap2M (kB)"),
    ("DirectMap1G", "DirectMap1G (kB)"), ("splits_2m", "2M splits"), ("splits_1g", "1G splits"),
    ("flush_tlb_all", "global TLB flushes"), ("grouped_cache_pages", "grouped cache pages"),
    ("grouped_fallback", "order-9 fallbacks"),
)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(usage.got("expected a whole number", text)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(usage.got("must be > 0", value))
    return value


def _level(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(usage.got("expected a number 0.0–1.0", text)) from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(usage.got("must be between 0.0 and 1.0", text))
    return value


def _parts(text):
    """A comma-separated argument's non-empty parts, stripped."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _sizes(text):
    sizes = _parts(text)
    if not sizes:
        raise argparse.ArgumentTypeError(usage.got("expected sizes like 8G,16G", text))
    for size in sizes:
        try:
            memparse(size)
        except ValueError:
            raise argparse.ArgumentTypeError(usage.got(
                "not a size; write a number with an optional K/M/G/T suffix, e.g. 8G",
                size)) from None
    return sizes


def _jobs_arg(p):
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="worker processes for the independent runs (default "
                        f"{default_jobs()}: this machine's cores, at most 2, except for a run "
                        "long enough to announce its estimate: 1, so that its progress bar "
                        "and Ctrl-C's summary are live); 1 runs them one after another")


def _bounds_args(p):
    p.add_argument("--force", action="store_true",
                   help=f"run even past the bounds ({budget.duration(budget.MAX_SECONDS)}, "
                        f"{budget.size(budget.MAX_BYTES)}; see gpalloc.budget)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no estimate")


def _seeds(text):
    try:
        seeds = tuple(int(part) for part in _parts(text))
    except ValueError:
        raise argparse.ArgumentTypeError(usage.got("expected seeds like 0,1,2", text)) from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(usage.got("expected seeds ≥ 0 like 0,1,2", text))
    return seeds


def _names(text):
    names = _parts(text)
    if not names:
        raise argparse.ArgumentTypeError(usage.got("expected capture names", text))
    return names


def build_parser():
    """The argparse parser (``gpalloc experiment SCENARIO [options]``)."""
    p = usage.Parser(prog="gpalloc", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("experiment", help="run a scenario on the baseline and grouped kernels")
    e.add_argument("scenario", choices=SCENARIOS)
    e.add_argument("--seed", type=int, default=0, help="seed for the machine and workload")
    e.add_argument("--nodes", type=_positive_int, help="NUMA nodes (default: scenario's)")
    e.add_argument("--node-mem", help="memory per node, e.g. 8G (default: scenario's)")
    e.add_argument("--pressure", type=_level,
                   help="background memory pressure 0.0–1.0 instead of a machine state")
    e.add_argument("--state", choices=machine_state_names(), metavar="STATE",
                   help="the background of a real machine's capture (default "
                        f"{Calibration.state}; {', '.join(machine_state_names())})")
    e.add_argument("--lsmod", help="an lsmod or /proc/modules file to boot with")
    e.add_argument("--programs", type=_positive_int, default=512, help="bpf-load: programs")
    e.add_argument("--pages", type=_positive_int, default=1, help="bpf-load/churn: JIT pages")
    e.add_argument("--insns", type=_positive_int,
                   help="bpf-load: classic socket filters of this many instructions instead "
                        "(held, then closed, as `gpalloc live bpf-filters` runs them)")
    e.add_argument("--rounds", type=_positive_int,
                   help="bpf-load with --insns: load-and-close rounds (default 1)")
    e.add_argument("--per-process", action="store_true",
                   help="bpf-load: each program loaded and held by its own process (fork, "
                        "exec, libbpf's probes, a map, a socket; with --insns a forked child "
                        "per filter, as `gpalloc live bpf-procs`); all exit at the end")
    e.add_argument("--capture", metavar="DIR",
                   help="start from a captured machine's state (a `gpalloc live` capture or "
                        "phase folder, or a /proc capture with zoneinfo and pagetypeinfo)")
    e.add_argument("--loads", type=_positive_int, default=1000, help="bpf-churn: loads")
    e.add_argument("--kernel", action="append", choices=designs.names(), metavar="DESIGN",
                   help="run these designs instead of baseline/grouped "
                        f"({', '.join(designs.names())}); repeatable")
    e.add_argument("--compare-kernels", action="store_true",
                   help="run every design on the same seed and compare them")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--check", action="store_true",
                   help="Machine.check() after every phase of every kernel (W^X on every pfn)")
    _jobs_arg(e)
    _bounds_args(e)
    r = sub.add_parser("ram-sweep", help="fedora-bpf on machines of several RAM sizes")
    r.add_argument("--seed", type=int, default=0, help="seed for the machine and workload")
    r.add_argument("--sizes", type=_sizes, default=RAM_SIZES,
                   help=f"comma-separated memory sizes (default: {','.join(RAM_SIZES)})")
    r.add_argument("--csv", action="store_true", help="print CSV only (data/results/)")
    _jobs_arg(r)
    _bounds_args(r)
    s = sub.add_parser("sensitivity",
                       help="fedora-bpf with one calibration input changed at a time "
                            "(gpalloc.sensitivity; several minutes)")
    s.add_argument("--csv", action="store_true", help="print CSV only (data/results/)")
    s.add_argument("--quiet", action="store_true", help="no progress line")
    _jobs_arg(s)
    q = sub.add_parser("quiz", help="a seeded homework question; -c also prints the answer")
    q.add_argument("kind", choices=KINDS)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("-c", "--compute", action="store_true", help="compute and show the answer")
    v = sub.add_parser("validate", help="the model against the live captures' validation set")
    v.add_argument("--seeds", type=_seeds, default=(0,),
                   help="comma-separated model seeds (default 0); several give the spread")
    v.add_argument("--kernel", default=VALIDATION_DESIGN, choices=designs.names(),
                   metavar="DESIGN", help=f"the design to validate (default {VALIDATION_DESIGN})")
    v.add_argument("--captures", type=_names, default=VALIDATION_SET,
                   help="comma-separated capture names under data/measurements/ "
                        "(default: the validation set)")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    live_cli.add_parser(sub)
    return p


def calibration(args):
    """The scenario's Calibration with the command line's overrides."""
    if args.capture is not None:
        given = [f"--{n.replace('_', '-')}" for n in ("nodes", "node_mem", "pressure", "state")
                 if getattr(args, n) is not None]
        if given:
            raise ValueError(f"{given[0]}: the machine is the capture's (--capture); "
                             "leave it out")
        return Calibration.for_capture(args.capture)
    cal = Calibration()
    if args.nodes is not None:
        cal.nodes = args.nodes
    if args.node_mem is not None:
        cal.node_mem = args.node_mem
    if args.pressure is not None and args.state is not None:
        raise ValueError("--pressure: a machine state (--state) sets the background; give "
                         "one of the two")
    if args.pressure is not None:
        cal.pressure, cal.state = args.pressure, None
    if args.state is not None:
        cal.state = args.state
    return cal


def kernels(args):
    """baseline/grouped by default; --kernel picks designs; --compare-kernels takes all."""
    if args.compare_kernels:
        return designs.names()
    if args.kernel:
        return list(dict.fromkeys(args.kernel))
    return designs.BASELINE_VS_GROUPED


def scenario_args(args):
    """The workload options that apply to the chosen scenario."""
    wanted = {"fedora-bpf": ("lsmod",), "modules": ("lsmod",),
              "bpf-load": ("programs", "pages", "insns", "rounds", "per_process"),
              "bpf-churn": ("loads", "pages")}
    if getattr(args, "rounds", None) and not getattr(args, "insns", None):
        raise ValueError("--rounds: only with --insns (rounds of classic socket filters)")
    if getattr(args, "per_process", False) and args.scenario != "bpf-load":
        raise usage.UsageError("--per-process", "only with bpf-load", args.scenario)
    return {name: getattr(args, name) for name in wanted[args.scenario]
            if getattr(args, name) not in (None, False)}


class Progress:
    """The progress_factory of the runs: a tqdm bar per kernel run, and the counts Ctrl-C's
    summary prints.  The bar shows on a terminal once a run has taken 1 s, or at once (on
    any stderr) for a run whose estimate was announced."""

    def __init__(self, show, at_once, runs):
        self.show, self.at_once, self.runs = show, at_once, runs
        self.run, self.name, self.done, self.total = 0, "", 0, 0
        self.start = time.monotonic()

    def __call__(self, name, total):
        self.run, self.name, self.done, self.total = self.run + 1, name, 0, total
        bar = None
        if self.show:
            from tqdm import tqdm
            bar = tqdm(total=total, desc=name, unit="ev", leave=False, file=sys.stderr,
                       disable=False if self.at_once else None,
                       delay=0.0 if self.at_once else 1.0)
        return _Bar(self, bar)

    def summary(self):
        """``after 3.2 s: run 1 of 2 (baseline), 1,024 of 1,000,000 events``."""
        where = (f": run {self.run} of {self.runs} ({self.name}), {self.done:,} of "
                 f"{self.total:,} events" if self.run else ": before the first run")
        return f"after {time.monotonic() - self.start:.1f} s{where}; no results"


class _Bar:
    """What run_experiment updates and closes: counts, and the tqdm bar if any."""

    def __init__(self, progress, bar):
        self.progress, self.bar = progress, bar

    def update(self, n):
        self.progress.done += n
        if self.bar is not None:
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def format_table(result):
    """The text report: parameters first, then one column per kernel."""
    m, w = result["machine"], result["workload"]
    lines = [f"gpalloc experiment {result['scenario']}  seed={result['seed']}",
             "  machine: " + " ".join(f"{k}={v}" for k, v in m.items()
                                      if not k.startswith("DirectMap")),
             "  boot: " + " ".join(f"{k}={v} kB" for k, v in m.items()
                                   if k.startswith("DirectMap")),
             "  workload: " + " ".join(f"{k}={v}" for k, v in w.items()), ""]
    runs = list(result["runs"].values())
    table = [["", *result["runs"]]]
    table += [[label, *(run.get(key, 0) for run in runs)] for key, label in TABLE_ROWS]
    if any("reduction_pct" in run for run in runs):
        table.append(["4K pages fewer (%)", *(f"{run.get('reduction_pct', 0.0):.1f}"
                                              for run in runs)])
        table.append(["  of those after boot", *(f"{run.get('reduction_of_growth_pct', 0.0):.1f}"
                                                 for run in runs)])
    lines.append(text_table(table, "<" + ">" * len(runs), [24] + [14] * len(runs), sep=""))
    for label, run in result["runs"].items():
        steps = run.get("phases", [])
        if len(steps) > 2:   # a phased workload: the direct map after each phase
            lines.append(f"  {label} DirectMap4k (kB) by phase: " + " → ".join(
                f"{p['phase']} {p['DirectMap4k']:,}" for p in steps))
    if "reduction_pct" in result:
        lines += ["", f"4K direct-map pages: grouped has {result['reduction_pct']:.1f} % fewer "
                      f"than baseline ({result['reduction_of_growth_pct']:.1f} % fewer of "
                      "those created after boot)"]
    return "\n".join(lines)


def format_ram_sweep(rows, seed):
    """The ram-sweep report: parameters first, then one line per size."""
    lines = [f"gpalloc ram-sweep  seed={seed}  scenario=fedora-bpf",
             "  machine: " + " ".join(f"{k}={v}" for k, v in vars(Calibration()).items()
                                      if k not in ("node_mem", "capture")) + "  node_mem=<size>",
             ""]
    table = [["RAM", "baseline 4K kB", "grouped 4K kB", "fewer %", "of growth %",
              "unmovable pageblocks"]]
    table += [[r["node_mem"], f"{r['baseline_4k_kb']:,}", f"{r['grouped_4k_kb']:,}",
               f"{r['reduction_pct']:.2f}", f"{r['reduction_of_growth_pct']:.2f}",
               r["unmovable_pageblocks"]] for r in rows]
    lines.append(text_table(table, ">" * 6, [5, 15, 14, 8, 12, 21]))
    return "\n".join(lines)


def _ram_flag(args):
    """The flag named when the machine's RAM is what is too large."""
    return "--nodes" if args.nodes is not None and args.node_mem is None else "--node-mem"


def estimate(args):
    """The run's budget.Estimate (experiment, ram-sweep), or None for the other commands.

    The machine shapes are checked first (a Machine is cheap to boot: its memmap is lazy),
    so a bad --nodes or --node-mem gets the model's own message, not an estimate.
    """
    if args.command == "experiment":
        cal = calibration(args)
        Machine(seed=args.seed, **cal.machine_kwargs())
        est = budget.experiment_estimate(args.scenario, cal, len(kernels(args)),
                                         **scenario_args(args))
        return est.named(ram_flag=_ram_flag(args))
    if args.command == "ram-sweep":
        cals = [Calibration(node_mem=size) for size in args.sizes]
        for cal in cals:
            Machine(seed=args.seed, **cal.machine_kwargs())
        events = budget.event_count("fedora-bpf")
        runs = len(designs.BASELINE_VS_GROUPED)
        return budget.combine([budget.estimate(events, runs, cal) for cal in cals], "--sizes")
    return None


def _prepare(args):
    """Refuse what cannot run (before anything runs); announce a long run; its Progress."""
    if args.command == "experiment" and args.scenario == "modules" and args.lsmod is None:
        raise usage.UsageError("--lsmod", "the modules scenario needs a module listing", "none")
    est = estimate(args)
    if est is None:
        return None
    refusal = est.refusal()
    if refusal is not None and not args.force:
        flag, problem = refusal
        dest = flag[2:].replace("-", "_")
        value = getattr(args, dest, None)
        if value is None:   # not given: the calibration's default is what ran into the bound
            value = getattr(Calibration(), dest)
        raise usage.UsageError(flag, problem, ",".join(value) if isinstance(value, tuple)
                               else value)
    if est.announce() and not args.quiet:
        print(f"gpalloc: estimate: {est.text()}", file=sys.stderr, flush=True)
    if getattr(args, "jobs", 0) is None:   # a long run stays in this process: live progress
        args.jobs = 1 if est.announce() and not args.quiet else default_jobs()
    return Progress(not args.quiet, est.announce(), est.runs)


def _run(args, progress):
    """Run the command; returns the text to print."""
    if args.command == "live":
        return live_cli.run(args)
    if args.command == "validate":
        report = validate(args.captures, args.seeds, args.kernel)
        return json.dumps(report, indent=1) if args.json else format_validation(report)
    if args.command == "sensitivity":
        if not args.quiet:
            print(f"gpalloc: sensitivity: {len(sensitivity.tasks())} fedora-bpf runs",
                  file=sys.stderr, flush=True)
        rows = sensitivity.sensitivity(jobs=args.jobs or default_jobs())
        if args.csv:
            out = io.StringIO()
            sensitivity.write_csv(rows, out)
            return out.getvalue().rstrip("\n")
        return sensitivity.summary(rows)
    if args.command == "ram-sweep":
        rows = ram_sweep(args.sizes, args.seed, progress, jobs=args.jobs)
        if args.csv:
            out = io.StringIO()
            write_ram_sweep(rows, out)
            return out.getvalue().rstrip("\n")
        return format_ram_sweep(rows, args.seed)
    result = run_experiment(args.scenario, seed=args.seed, cal=calibration(args),
                            kernels=kernels(args), progress_factory=progress, check=args.check,
                            jobs=args.jobs,
                            **scenario_args(args))
    if args.json:
        return json.dumps(result, indent=1)
    text = format_table(result)
    if args.check:
        checks = sum(run["checks"] for run in result["runs"].values())
        text += (f"\n\ncheck: Machine.check() held after every phase: {checks} checks on "
                 f"{len(result['runs'])} kernels, W^X over every pfn's mappings")
    return text


def main(argv=None):
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "quiz":
        print(quiz(args.kind, args.seed, args.compute))
        return 0
    progress = None
    try:
        progress = _prepare(args)
        text = _run(args, progress)
    except KeyboardInterrupt:
        print(f"gpalloc: interrupted {progress.summary()}" if progress
              else "gpalloc: interrupted; no results", file=sys.stderr)
        return 130
    except (ValueError, OSError) as err:
        return usage.report(err, args)
    except InvariantError as err:   # a model bug, not bad input: say which invariant
        print(f"gpalloc: check: {err}", file=sys.stderr)
        return 1
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:   # `gpalloc ... | head`: the reader left, which is fine
        sys.stdout = open(os.devnull, "w")   # noqa: SIM115 - keep the interpreter's flush quiet
    return 0
