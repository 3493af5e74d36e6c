"""``python -m gpalloc validate``: the model next to the live kernel's captures, phase by phase.

For each capture of data/measurements/ (the VALIDATION set by default) the model starts
in the capture's own state just before its first load (``Machine.from_proc`` of
``01-filled`` if the run filled memory first, else ``00-before``) and plays the same
workload — N classic socket filters of K instructions, held then closed, R rounds —
through the same code path as ``gpalloc experiment bpf-load --capture DIR --insns K``
(gpalloc.experiments.run_experiment).  Each loaded phase gives one row: the change of
DirectMap4k/2M/1G while the programs are held (loaded − the phase before), measured and
modelled, with the error of the 4K growth.  The goal (issue 11): every row within ±30 %
on DirectMap4k growth and the 1G split count exact.

Nothing here calibrates: the model's inputs come from the capture's pre-run phase and
the CALIBRATION set (gpalloc.workloads.from_proc, gpalloc.net.filter; data/README.md).
``bpf-procs`` captures (one process per filter) are played per process (``bpf-load
--per-process --insns K``): each filter in a forked child whose kernel memory is the
``python-fork`` cost measured on the calibration captures b2-15/b2-16
(gpalloc.workloads.process).
"""

import re
from statistics import mean

from .experiments import run_experiment
from .live.capture import read_capture
from .tables import text_table
from .workloads.from_proc import start_phase
from .workloads.scenario import DATA, Calibration

MEASUREMENTS = DATA / "measurements"
VALIDATION_DESIGN = "6.18"
# data/measurements/README.md, "The captures": the set column of each row
CALIBRATION_SET = ("b1-00-idle", "b1-01-probe-n1200-k800", "b1-02-probe-n600-k1600",
                   "b1-03-probe-n400-k2400", "b1-04-probe-n2200-k400",
                   "b2-15-filters-n400-k100", "b2-16-procs-n400-k100", "b2-17-sleep-n400")
VALIDATION_SET = ("b1-05-filters-n500-k800", "b1-06-filters-n300-k100",
                  "b1-07-filters-n2000-k1600", "b1-08-filters-n1000-k2400",
                  "b1-09-filters-n3000-k400-r3", "b1-10-filters-n6000-k800",
                  "b1-11-procs-n600-k800", "b1-12-filters-n2000-k800-r2-untraced",
                  "b1-13-filters-n2000-k800-fill50pct-shmem",
                  "b1-14-filters-n2000-k800-fill8G-pagecache",
                  "b2-05-filters-n500-k800", "b2-06-filters-n300-k100",
                  "b2-07-filters-n2000-k1600", "b2-08-filters-n1000-k2400",
                  "b2-09-filters-n3000-k400-r3", "b2-10-filters-n6000-k800",
                  "b2-11-procs-n600-k800", "b2-12-filters-n2000-k800-r2-untraced",
                  "b2-13-filters-n2000-k800-fill50pct-shmem",
                  "b2-14-filters-n2000-k800-fill8G-pagecache")
TOLERANCE = 0.30
LINES = ("DirectMap4k", "DirectMap2M", "DirectMap1G")


def capture_folder(name):
    """A capture by name under data/measurements/, or a path as given."""
    folder = MEASUREMENTS / name
    if not folder.is_dir():
        raise ValueError(f"--captures: no capture {name!r} in {MEASUREMENTS}")
    return folder


def measured_rounds(capture):
    """Per loaded phase of a read capture: (phase, {line: kB change}) against the phase before."""
    out, phases = [], capture["phases"]
    for before, phase in zip(phases, phases[1:], strict=False):
        if "-loaded-" in phase["name"]:
            out.append((phase["name"], {line: phase["meminfo"].get(line, 0)
                                        - before["meminfo"].get(line, 0) for line in LINES}))
    return out


def workload(capture):
    """The experiment arguments of a capture's command (programs, insns, rounds, and
    per_process for a ``bpf-procs`` capture)."""
    p = capture["provenance"]["parameters"]
    kw = {"programs": p["programs"], "insns": p["insns"], "rounds": p.get("rounds", 1)}
    if p.get("kind") == "bpf-procs":
        kw["per_process"] = True
    return kw


def model_rounds(folder, seed, design, kw):
    """Per loaded phase of the model run: {line: kB change} against the phase before."""
    run = run_experiment("bpf-load", seed=seed, cal=Calibration.for_capture(start_phase(folder)),
                         kernels=[design], **kw)["runs"][design]
    out, phases = [], run["phases"]
    for before, phase in zip(phases, phases[1:], strict=False):
        if phase["phase"].startswith("loaded-"):
            out.append({line: phase[line] - before[line] for line in LINES})
    return out


def error(model, real):
    """Relative error of a growth: None when nothing was measured (then only 0 is right)."""
    return None if real == 0 else (model - real) / real


def within(model, real):
    """Inside the tolerance: ±30 % of the measured growth, or exactly 0 when it was 0."""
    e = error(model, real)
    return model == real if e is None else abs(e) <= TOLERANCE


def boot_pairs(rows):
    """The same command and round measured on more than one boot: the spread of the real
    DirectMap4k growth, whether any one value lies within ±30 % of every boot's growth
    (``reachable``: max/min ≤ 1.3/0.7, or all 0), and whether the model's value for each
    boot lies inside the boots' range widened by ±30 % (``model_in_range``)."""
    groups = {}
    for r in rows:   # "b1-05-filters-n500-k800" and "b2-05-..." are one command (the committed
        # captures' names, data/measurements/README.md); any other name is a command of its own
        boot_prefixed = re.fullmatch(r"b\d+-(.+)", r["capture"])
        command = boot_prefixed.group(1) if boot_prefixed else r["capture"]
        groups.setdefault((command, r["phase"]), []).append(r)
    out = []
    for (command, phase), rs in groups.items():
        if len({r["boot"] for r in rs}) < 2:
            continue
        real = [r["real"]["DirectMap4k"] for r in rs]
        model = [r["model"]["DirectMap4k"] for r in rs]
        lo, hi = min(real), max(real)
        reachable = hi == 0 or (lo > 0 and (1 - TOLERANCE) * hi <= (1 + TOLERANCE) * lo)
        in_range = all(m == 0 for m in model) if hi == 0 else \
            all((1 - TOLERANCE) * lo <= m <= (1 + TOLERANCE) * hi for m in model)
        out.append({"command": command, "phase": phase, "captures": [r["capture"] for r in rs],
                    "real_4k": real, "model_4k": model, "reachable": reachable,
                    "model_in_range": in_range})
    return out


def validate(captures=VALIDATION_SET, seeds=(0,), design=VALIDATION_DESIGN):
    """Rows (one per capture and loaded phase) and a summary, JSON-ready."""
    rows = [row for name in captures for row in compare(capture_folder(name), seeds, design)]
    return report(rows, seeds, design)


def report(rows, seeds, design=VALIDATION_DESIGN):
    """Rows and their summary: how many within ±30 %, how many exact on 1G, the mean error."""
    summary = {"design": design, "seeds": list(seeds), "rows": len(rows),
               "within_4k": sum(r["within_4k"] for r in rows),
               "exact_1g": sum(r["exact_1g"] for r in rows),
               "seed_rows_within_4k": sum(r["seeds_within_4k"] for r in rows),
               "mean_abs_error_4k": _mean_abs(rows)}
    pairs = boot_pairs(rows)
    summary.update(boot_pairs=len(pairs),
                   boot_pairs_unreachable=sum(not p["reachable"] for p in pairs),
                   boot_pairs_model_in_range=sum(p["model_in_range"] for p in pairs))
    return {"rows": rows, "summary": summary, "boot_pairs": pairs}


def compare(folder, seeds=(0,), design=VALIDATION_DESIGN):
    """One capture folder (any, e.g. one ``gpalloc live`` just wrote): its rows."""
    rows = []
    cap = read_capture(folder)
    name = cap["name"]
    kw = workload(cap)
    runs = [model_rounds(folder, seed, design, kw) for seed in seeds]
    for i, (phase, real) in enumerate(measured_rounds(cap)):
        model = runs[0][i]   # the first seed's run: what `experiment --capture` prints
        seeds_4k = [run[i]["DirectMap4k"] for run in runs]
        seeds_1g = [run[i]["DirectMap1G"] for run in runs]
        rows.append({"capture": name, "phase": phase, "kind": cap["provenance"]["parameters"]
                     .get("kind", "bpf-filters"), "boot": cap["provenance"].get("boot_id"), **kw,
                     "real": real, "model": model,
                     "model_4k_seeds": seeds_4k,
                     "model_4k_min": min(seeds_4k), "model_4k_max": max(seeds_4k),
                     "error_4k": error(model["DirectMap4k"], real["DirectMap4k"]),
                     "within_4k": within(model["DirectMap4k"], real["DirectMap4k"]),
                     "seeds_within_4k": sum(within(m4, real["DirectMap4k"])
                                            for m4 in seeds_4k),
                     "exact_1g": all(g == real["DirectMap1G"] for g in seeds_1g)})
    return rows


def _mean_abs(rows):
    errs = [abs(r["error_4k"]) for r in rows if r["error_4k"] is not None]
    return round(mean(errs), 3) if errs else None


def _boots_line(boots):
    if len(boots) == 1:
        return ("All captures are from one boot: the spread is over model seeds only, "
                "not over boots.")
    return f"Captures from {len(boots)} boots."


def _pct(e):
    return "n/a" if e is None else f"{100 * e:+.0f} %"


def format_validation(report):
    """The table: per capture and round, measured and model DirectMap changes, and the error."""
    s = report["summary"]
    lines = [f"gpalloc validate  design={s['design']}  seeds={','.join(map(str, s['seeds']))}",
             "  model: Machine.from_proc(capture's pre-run phase) + the capture's workload; "
             "changes while loaded, kB", ""]
    table = [["capture", "phase", "N", "K", "real 4k", "model 4k", "err", "real 2M",
              "model 2M", "real 1G", "model 1G", "ok"]]
    for r in report["rows"]:
        spread = (f" [{r['model_4k_min']:,}..{r['model_4k_max']:,}]"
                  if r["model_4k_min"] != r["model_4k_max"] else "")
        ok = ("yes" if r["within_4k"] and r["exact_1g"] else
              "no (1G)" if r["within_4k"] else "no")
        table.append([r["capture"], r["phase"], r["programs"], r["insns"],
                      f"{r['real']['DirectMap4k']:+,}", f"{r['model']['DirectMap4k']:+,}{spread}",
                      _pct(r["error_4k"]), f"{r['real']['DirectMap2M']:+,}",
                      f"{r['model']['DirectMap2M']:+,}", f"{r['real']['DirectMap1G']:+,}",
                      f"{r['model']['DirectMap1G']:+,}", ok])
    lines.append(text_table(table, "<<>>>><>>>><", rule=True))
    n_seeds = len(s["seeds"])
    lines += ["", f"seed {s['seeds'][0]}: {s['within_4k']} of {s['rows']} rows within "
                  f"±{100 * TOLERANCE:.0f} % on DirectMap4k growth (0 must be exactly 0); "
                  f"mean |error| of the non-zero rows {_pct(s['mean_abs_error_4k']).lstrip('+')}",
              f"1G change exact in {s['exact_1g']} of {s['rows']} rows at every seed"
              + (f"; over {n_seeds} seeds [min..max shown] {s['seed_rows_within_4k']} of "
                 f"{s['rows'] * n_seeds} seed-rows within ±{100 * TOLERANCE:.0f} %"
                 if n_seeds > 1 else ""),
              _boots_line({r["boot"] for r in report["rows"]})]
    if s["boot_pairs"]:
        lines.append(
            f"The same command on two boots, {s['boot_pairs']} rounds: in "
            f"{s['boot_pairs_unreachable']} the boots differ by more than ±30 % can span "
            f"(max/min > {(1 + TOLERANCE) / (1 - TOLERANCE):.2f}), so no prediction is within "
            f"±30 % of both; the model lies within the boots' range ±30 % in "
            f"{s['boot_pairs_model_in_range']} of {s['boot_pairs']}.")
    return "\n".join(lines)
