"""The 6.18 model against every validation capture (python -m gpalloc validate), one test each.

Each test starts the model in the capture's pre-run state and plays its workload (seed 0).
Held everywhere: the 1G change is exact and the rows follow the capture's rounds.  The ±30 %
goal on DirectMap4k growth holds for some rows; the others are the model's known
disagreements, kept as strict xfails with the reason found (README "What the live kernel
says"): if one starts to pass, the test fails until the list is updated.
"""

import contextlib
import functools
import io
import json

import pytest

from gpalloc.cli import main
from gpalloc.live import read_capture
from gpalloc.validate import (
    CALIBRATION_SET,
    MEASUREMENTS,
    VALIDATION_SET,
    measured_rounds,
    validate,
)

SPREAD = "the model lands its packs in fewer 2 MiB regions than the kernel once it claims " \
         "fresh 4 MiB blocks (52 regions for 7 packs in the trace, about 2 per pack in the model)"
REUSE = "round 2 reuses fewer split regions in the model: its freed pages wait on one CPU's " \
        "per-CPU list in LIFO order, so the next packs land where round 1's bpf_prog pages were"
UNKNOWN_FREE = "where the run's free Unmovable pages lie is only partly measured: earlier " \
               "traces show the earlier runs' own pages, not the rest of the kernel's, which " \
               "the model places by rule"
UNTRACED = "which 2 MiB regions hold the few free Unmovable pages this run takes is not in " \
           "the capture, and the run before it (b1-12) was not traced: the model places them " \
           "by rule"
PROCS = "one process per filter, played per process (the python-fork cost of b2-16): the " \
        "children's memory does not change where the model's pack lands (no 4K split); why " \
        "the real run split one 2 MiB region is not established"
PROCS_B2 = "one process per filter, played per process (the python-fork cost of b2-16): " \
           "+4,096 kB against +6,144 (-33 %; as filters only, +0)"
HISTORY = "the boot history (gpalloc.live.history) now holds issue 12's calibration runs " \
          "b2-15/b2-16, traced on this boot before b2-00: their Unmovable pageblocks move " \
          "where the model's packs land, and this row no longer agrees"
BOOTS = "how many 2 MiB regions a pack's 512 pages span is not in the capture (it holds " \
        "free counts per order, not where the blocks lie), and it is not repeatable on the real " \
        "machine either: the same command split up to 2x (large runs) or 3x (runs of 1-3 " \
        "regions) as much on one boot as on the other (data/measurements/README.md)"
# (capture, phase) → why the 4K growth misses ±30 % (seed 0)
KNOWN_MISSES = {
    ("b1-07-filters-n2000-k1600", "02-loaded-r1"): SPREAD,
    ("b1-08-filters-n1000-k2400", "02-loaded-r1"): SPREAD,
    ("b1-09-filters-n3000-k400-r3", "02-loaded-r1"): UNKNOWN_FREE,
    ("b1-09-filters-n3000-k400-r3", "04-loaded-r2"): REUSE,
    ("b1-11-procs-n600-k800", "02-loaded-r1"): PROCS,
    ("b1-12-filters-n2000-k800-r2-untraced", "02-loaded-r1"): UNKNOWN_FREE,
    ("b1-13-filters-n2000-k800-fill50pct-shmem", "02-loaded-r1"): UNTRACED,
    ("b1-14-filters-n2000-k800-fill8G-pagecache", "02-loaded-r1"): UNTRACED,
    ("b2-05-filters-n500-k800", "02-loaded-r1"): BOOTS,
    ("b2-07-filters-n2000-k1600", "02-loaded-r1"): BOOTS,
    ("b2-08-filters-n1000-k2400", "02-loaded-r1"): HISTORY,
    ("b2-09-filters-n3000-k400-r3", "04-loaded-r2"): HISTORY,
    ("b2-09-filters-n3000-k400-r3", "06-loaded-r3"): BOOTS,
    ("b2-10-filters-n6000-k800", "02-loaded-r1"): BOOTS,
    ("b2-11-procs-n600-k800", "02-loaded-r1"): PROCS_B2,
    ("b2-12-filters-n2000-k800-r2-untraced", "02-loaded-r1"): BOOTS,
    ("b2-12-filters-n2000-k800-r2-untraced", "04-loaded-r2"): HISTORY,
    ("b2-13-filters-n2000-k800-fill50pct-shmem", "02-loaded-r1"): BOOTS,
    ("b2-14-filters-n2000-k800-fill8G-pagecache", "02-loaded-r1"): BOOTS,
}


@functools.cache
def _rows(name):
    return tuple(validate((name,), seeds=(0,))["rows"])


def test_the_sets_are_the_readmes():
    readme = (MEASUREMENTS / "README.md").read_text(encoding="utf-8")
    rows = [line.split("|") for line in readme.splitlines()
            if line.startswith(("| `b1-", "| `b2-")) and line.rstrip().endswith("|")]
    sets = {r[1].strip().strip("`"): r[-2].strip() for r in rows}
    assert tuple(n for n, s in sets.items() if s == "validation") == VALIDATION_SET
    assert tuple(n for n, s in sets.items() if s == "calibration") == CALIBRATION_SET


@pytest.mark.parametrize("name", VALIDATION_SET)
def test_validation_capture(name):
    rows = _rows(name)
    real = measured_rounds(read_capture(MEASUREMENTS / name))
    assert [r["phase"] for r in rows] == [phase for phase, _ in real]
    for r in rows:
        assert r["exact_1g"], f"{name} {r['phase']}: 1G change {r['model']['DirectMap1G']} " \
                              f"kB, measured {r['real']['DirectMap1G']} kB"
        if (name, r["phase"]) in KNOWN_MISSES:
            continue
        assert r["within_4k"], f"{name} {r['phase']}: model {r['model']['DirectMap4k']} kB, " \
                               f"measured {r['real']['DirectMap4k']} kB"


@pytest.mark.parametrize("key", sorted(KNOWN_MISSES),
                         ids=[f"{c}:{p}" for c, p in sorted(KNOWN_MISSES)])
def test_known_miss(key):
    rows = {r["phase"]: r for r in _rows(key[0])}
    if not rows[key[1]]["within_4k"]:
        pytest.xfail(KNOWN_MISSES[key])
    pytest.fail(f"{key} is now within ±30 %: take it off KNOWN_MISSES")


def test_experiment_gives_the_validation_prediction():
    name = "b1-05-filters-n500-k800"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["experiment", "bpf-load", "--kernel", "6.18", "--capture",
                     str(MEASUREMENTS / name), "--programs", "500", "--insns", "800",
                     "--json", "--quiet"]) == 0
    phases = json.loads(out.getvalue())["runs"]["6.18"]["phases"]
    grown = phases[1]["DirectMap4k"] - phases[0]["DirectMap4k"]
    assert grown == _rows(name)[0]["model"]["DirectMap4k"]


def test_validate_cli_prints_every_row_and_refuses_unknown_captures(capsys):
    assert main(["validate", "--captures", "b1-06-filters-n300-k100"]) == 0
    out = capsys.readouterr().out
    assert "b1-06-filters-n300-k100" in out and "1 of 1 rows within ±30 %" in out
    assert main(["validate", "--captures", "nope"]) == 2
    assert capsys.readouterr().err.strip() == \
        f"gpalloc: error: --captures: no capture 'nope' in {MEASUREMENTS}"


def _row(capture, phase, boot, real, model):
    return {"capture": capture, "phase": phase, "boot": boot,
            "real": {"DirectMap4k": real}, "model": {"DirectMap4k": model}}


def test_boot_pairs_say_when_no_prediction_can_be_within_30_percent_of_both_boots():
    from gpalloc.validate import boot_pairs
    rows = [_row("b1-05-x", "02", "a", 6144, 6144), _row("b2-05-x", "02", "b", 6144, 7168),
            _row("b1-08-y", "02", "a", 38912, 20480), _row("b2-08-y", "02", "b", 20480, 20480),
            _row("b1-06-z", "02", "a", 0, 0), _row("b2-06-z", "02", "b", 0, 2048),
            _row("b1-11-w", "02", "a", 2048, 2048),             # one boot only: no pair
            _row("m", "02", "a", 0, 0), _row("m", "04", "a", 0, 0)]   # a fresh live capture
    pairs = {p["command"]: p for p in boot_pairs(rows)}
    assert set(pairs) == {"05-x", "08-y", "06-z"}
    assert pairs["05-x"]["reachable"] and pairs["05-x"]["model_in_range"]
    # 38,912 / 20,480 = 1.9 > 1.3 / 0.7: no value is within ±30 % of both
    assert not pairs["08-y"]["reachable"] and pairs["08-y"]["model_in_range"]
    # both boots measured 0: only 0 is right, and one model run split a region
    assert pairs["06-z"]["reachable"] and not pairs["06-z"]["model_in_range"]


def test_validation_set_boot_pairs_are_the_spread_table_of_the_measurements_readme():
    """The finding criterion 3 runs into: the README's b2/b1 ratios outside 0.54..1.86."""
    from gpalloc.validate import boot_pairs
    rows = [r for name in VALIDATION_SET for r in _rows(name)]
    pairs = boot_pairs(rows)
    assert len(pairs) == 13
    unreachable = {(p["command"].split("-")[0], p["phase"]) for p in pairs if not p["reachable"]}
    # data/measurements/README.md: "08, 09 r1–r3, 11, 12 r2, 13"; README: "in 6 of the 13"
    assert unreachable == {("08", "02-loaded-r1"), ("09", "02-loaded-r1"), ("09", "04-loaded-r2"),
                           ("09", "06-loaded-r3"), ("11", "02-loaded-r1"), ("12", "04-loaded-r2"),
                           ("13", "02-loaded-r1")}
    assert sum(p["model_in_range"] for p in pairs) == 6


def test_committed_validation_is_what_the_model_computes():
    """data/results/runs/validate-seeds0.json (notebook 08's table) is current; regenerate it
    with `python -m gpalloc.runcache` (make regenerate)."""
    from gpalloc import runcache
    from gpalloc.validate import report
    data = json.loads(runcache._validation_path(runcache.VALIDATION_SEEDS).read_text())
    assert data["model"] == runcache.validation_fingerprint(), \
        "stale committed validation: python -m gpalloc.runcache"
    rows = [r for name in VALIDATION_SET for r in _rows(name)]
    assert data["result"] == json.loads(json.dumps(report(rows, runcache.VALIDATION_SEEDS)))
