"""``python -m gpalloc live ...``: the argparse wiring and the printed report.

    python -m gpalloc live bpf-filters --programs N --insns K [--rounds R]
        [--fill LEVEL --fill-kind pagecache|shmem] [--trace] [--pack-probe] [--out DIR]
    python -m gpalloc live bpf-procs --programs N --insns K ...
    python -m gpalloc live snapshot [--out DIR] [--name NAME]

Without root: filters load, fills work, and meminfo/buddyinfo/vmstat/zoneinfo//proc/sys/vm are
captured; pagetypeinfo, slabinfo and vmallocinfo (so the pack count) are skipped, and --trace
and --pack-probe are refused.
"""

from __future__ import annotations

import argparse

from . import bounds
from .bpf import DEFAULT_INSNS
from .fill import FILL_KINDS

DIRECTMAP = ("DirectMap4k", "DirectMap2M", "DirectMap1G")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``live`` and its experiments on the main parser's subparsers."""
    live = subparsers.add_parser("live", help="bounded experiments on the running Linux kernel")
    sub = live.add_subparsers(dest="live_command", required=True)
    for kind, text in (("bpf-filters", "N classic-BPF socket filters held by this process"),
                       ("bpf-procs", "N child processes, each holding one socket filter")):
        p = sub.add_parser(kind, help=text, description=text)
        limit = bounds.MAX_PROCS if kind == "bpf-procs" else bounds.MAX_PROGRAMS
        p.add_argument("--programs", type=int, default=500, help=f"N (<= {limit:,})")
        p.add_argument("--insns", type=int, default=DEFAULT_INSNS,
                       help=f"K classic instructions per program (<= 4096; default "
                            f"{DEFAULT_INSNS}, about one JIT page)")
        p.add_argument("--rounds", type=int, default=1, help="load/close rounds on this boot")
        p.add_argument("--fill", metavar="LEVEL",
                       help="fill memory first: 50%% of MemTotal, or a size like 8G")
        p.add_argument("--fill-kind", choices=FILL_KINDS, default="pagecache",
                       help="page cache (a file in /var/tmp) or shmem (/dev/shm)")
        p.add_argument("--trace", action="store_true",
                       help="record the kmem page events of each phase (root)")
        p.add_argument("--pack-probe", action="store_true",
                       help="count bpf_prog_packs after every attach (root; slow)")
        p.add_argument("--hold", type=float, default=0.0, help="seconds to hold the programs")
        p.add_argument("--settle", type=float, default=2.0,
                       help="at most this many seconds for the frees to settle after close")
        p.add_argument("--timeout", type=float, default=600.0, help="time bound in seconds")
        _output_args(p)
    s = sub.add_parser("snapshot", help="capture the machine as it is (one phase, full "
                                        "vmallocinfo and kernel log)")
    _output_args(s)
    return live


def _output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="live-captures", help="folder for the capture")
    p.add_argument("--name", help="capture folder name (default: boot, kind, sizes, time)")
    p.add_argument("--note", help="free text for the provenance, e.g. what else ran")


def run(args: argparse.Namespace) -> str:
    """Run ``live ...``; returns the report (parameters first, then DirectMap per phase)."""
    # Imported here: running needs Linux (resource, fork), building the parser does not.
    from .experiment import Params
    from .experiment import run as run_experiment
    from .snapshot import snapshot

    if args.live_command == "snapshot":
        result = snapshot(args.out, args.name, args.note)
        return format_report(result, f"gpalloc live snapshot  out={args.out}")
    params = Params(kind=args.live_command, programs=args.programs, insns=args.insns,
                    rounds=args.rounds, fill=args.fill, fill_kind=args.fill_kind,
                    trace=args.trace, pack_probe=args.pack_probe, hold=args.hold,
                    settle=args.settle, timeout=args.timeout, out=args.out, name=args.name,
                    note=args.note)
    header = (f"gpalloc live {params.kind}  programs={params.programs} insns={params.insns} "
              f"rounds={params.rounds} fill={params.fill or 'none'}"
              + (f" fill-kind={params.fill_kind}" if params.fill else "")
              + f" trace={'yes' if params.trace else 'no'}"
              + f" pack-probe={'yes' if params.pack_probe else 'no'}")
    return format_report(run_experiment(params), header)


def format_report(result: dict, header: str) -> str:
    """Parameters, machine, one line per phase (DirectMap and its change, packs), the folder."""
    prov = result["provenance"]
    lines = [header,
             f"  kernel: {prov['uname_a']}",
             f"  boot: {prov['boot_id']} at uptime {prov['uptime_at_start_s']:.0f} s; "
             f"root={'yes' if prov['root'] else 'no'}; "
             f"{len(prov['earlier_captures_this_boot'])} earlier captures of this boot in "
             "the output folder", "",
             f"{'phase':<16}" + "".join(f"{k + ' kB':>16}" for k in DIRECTMAP)
             + "".join(f"{'Δ' + k[9:]:>11}" for k in DIRECTMAP) + f"{'packs':>7}{'events':>9}"]
    prev = None
    for phase in result["phases"]:
        dm = phase["directmap"]
        delta = [dm[k] - (prev or dm)[k] for k in DIRECTMAP]
        packs = "-" if phase["packs"] is None else str(len(phase["packs"]))
        events = str(phase["trace"]["events"]) if "trace" in phase else "-"
        lines.append(f"{phase['phase']:<16}" + "".join(f"{dm[k]:>16,}" for k in DIRECTMAP)
                     + "".join(f"{d:>+11,}" for d in delta) + f"{packs:>7}{events:>9}")
        prev = dm
    if len(result["phases"]) > 1:
        first, last = result["phases"][0]["directmap"], result["phases"][-1]["directmap"]
        lines.append(f"{'whole run':<16}" + " " * 48 + "".join(
            f"{last[k] - first[k]:>+11,}" for k in DIRECTMAP))
    lines += ["", f"capture written to {result['folder']}"]
    return "\n".join(lines)
