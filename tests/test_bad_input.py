"""Bad input and long runs on the command line (issue 15).

Every bad value or file is one line, ``gpalloc: error: --flag: what is wrong (got VALUE)``,
status 2; argparse's usage block only for an unknown option.  A run past the bounds of
gpalloc.budget is refused within a second unless --force; a long run prints its estimate
and progress at once; Ctrl-C stops it with a one-line summary and status 130.  --check
runs Machine.check() after every phase.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpalloc import Machine, budget
from gpalloc.bug import InvariantError
from gpalloc.check import check_w_xor_x
from gpalloc.cli import main
from gpalloc.workloads.scenario import Calibration

ROOT = Path(__file__).resolve().parents[1]
MISSING = "/nonexistent/lsmod.txt"

# argv -> the exact line on stderr.  Each one is a case from issue 15 or its review.
BAD = [
    ("experiment bpf-load --pages 0", "--pages: must be > 0 (got 0)"),
    ("experiment bpf-load --pages x", "--pages: expected a whole number (got x)"),
    ("experiment bpf-load --pages", "--pages: needs a value (got nothing)"),
    ("experiment bpf-load --programs -5", "--programs: must be > 0 (got -5)"),
    ("experiment bpf-load --node-mem 3X", "--node-mem: cannot read size '3X'; write a number "
     "with an optional K/M/G/T suffix, e.g. '4G' (got 3X)"),
    ("experiment bpf-load --node-mem ²G", "--node-mem: cannot read size '²G'; write a number "
     "with an optional K/M/G/T suffix, e.g. '4G' (got ²G)"),
    ("experiment bpf-load --node-mem 100M",
     "--node-mem: must be a multiple of 4M and at least 256M (got 100M)"),
    ("experiment bpf-load --nodes 100", "--nodes: must be 1..64 (got 100)"),
    ("experiment bpf-load --nodes 0", "--nodes: must be > 0 (got 0)"),
    ("experiment bpf-load --pressure 2", "--pressure: must be between 0.0 and 1.0 (got 2)"),
    ("experiment bpf-load --pressure nan",
     "--pressure: must be between 0.0 and 1.0 (got nan)"),
    ("experiment bpf-load --seed -1", "--seed: must be ≥ 0 (got -1)"),
    ("experiment bpf-load --seed x", "--seed: expected a whole number (got x)"),
    ("experiment bpf-load --kernel foo",
     "--kernel: not one of 5.11, rfc, 5.18, cpa-merge, 6.15, 6.18 (got foo)"),
    ("experiment bogus",
     "scenario: not one of fedora-bpf, modules, bpf-load, bpf-churn (got bogus)"),
    ("experiment", "scenario: required (got nothing; see gpalloc experiment -h)"),
    ("experiment modules", "--lsmod: the modules scenario needs a module listing (got none)"),
    ("experiment modules --lsmod /tmp", "--lsmod: is a directory (got /tmp)"),
    (f"experiment modules --lsmod {MISSING}",
     f"--lsmod: no such file or directory (got {MISSING})"),
    ("experiment modules --lsmod data/machines/README.md",
     "--lsmod: data/machines/README.md:1: 8 fields: not an lsmod line (name size usecount "
     "[users]) nor a /proc/modules line (name size refcnt deps state addr [taints])"),
    ("ram-sweep --sizes 3X", "--sizes: not a size; write a number with an optional K/M/G/T "
     "suffix, e.g. 8G (got 3X)"),
    ("ram-sweep --sizes ,", "--sizes: expected sizes like 8G,16G (got ,)"),
    ("ram-sweep --sizes 100M",
     "--sizes: must be a multiple of 4M and at least 256M (got 100M)"),
    ("quiz bogus", "kind: not one of directmap, grouped, shrinker (got bogus)"),
    ("bogus",
     "command: not one of experiment, ram-sweep, sensitivity, quiz, validate, live (got bogus)"),
    ("live bpf-filters --programs x", "--programs: expected a whole number (got x)"),
    ("live bpf-filters --fill-kind bogus", "--fill-kind: not one of pagecache, shmem (got bogus)"),
]
# Refused by gpalloc.budget before anything runs (the three large inputs first).
LARGE = [
    ("experiment bpf-load --programs 1000000",
     "--programs: 2 runs, 2,000,000 events: about 9.7 min and 2.1 GB, past the bound of "
     "5.0 min; pass --force to run it anyway (got 1000000)"),
    ("experiment bpf-load --node-mem 1T",
     "--node-mem: 2 runs, 1,024 events: about 3.4 min and 4.0 GB, past the bound of 2.1 GB; "
     "pass --force to run it anyway (got 1T)"),
    ("experiment bpf-churn --loads 100000000",
     "--loads: 2 runs, 200,000,000 events: about 16.1 h and 15.0 GB, past the bound of "
     "5.0 min; pass --force to run it anyway (got 100000000)"),
    ("ram-sweep --sizes 8G,1T",
     "--sizes: 4 runs, 175,796 events: about 4.3 min and 4.0 GB, past the bound of 2.1 GB; "
     "pass --force to run it anyway (got 8G,1T)"),
]


def _main(capsys, argv):
    """Exit status and stderr of main(argv), whether argparse exits or main returns."""
    try:
        rc = main(argv.split())
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("argv, line", BAD, ids=[a for a, _ in BAD])
def test_bad_input_is_one_line(capsys, monkeypatch, argv, line):
    monkeypatch.chdir(ROOT)
    rc, err = _main(capsys, argv)
    assert (rc, err) == (2, f"gpalloc: error: {line}\n")


def test_unknown_option_keeps_the_usage_block(capsys):
    rc, err = _main(capsys, "experiment bpf-load --bogus")
    assert rc == 2
    assert err.startswith("usage: gpalloc")
    assert err.endswith("gpalloc: error: unrecognized arguments: --bogus\n")


def test_live_bounds_are_one_line(capsys):
    """live's own bounds (gpalloc.live.bounds) come out in the same shape (checked before
    anything touches the kernel; needs Linux to get that far)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("live experiments need Linux")
    for argv, line in (("--programs 0", "--programs: must be between 1 and 20,000 (got 0)"),
                       ("--insns 99999", "--insns: must be between 1 and 4,096 (got 99999)"),
                       ("--rounds 0", "--rounds: must be between 1 and 10 (got 0)"),
                       ("--timeout -1", "--timeout: must be between 1 and 1,800 (got -1.0)")):
        rc, err = _main(capsys, f"live bpf-filters {argv}")
        assert (rc, err) == (2, f"gpalloc: error: {line}\n")


def test_a_garbage_file_names_the_flag_and_line(capsys, tmp_path):
    bad = tmp_path / "lsmod.txt"
    bad.write_bytes(b"Module Size Used by\nxt_nat 16384 1\n\xff\xfe 12 1\n")
    rc, err = _main(capsys, f"experiment modules --lsmod {bad}")
    assert (rc, err) == (2, f"gpalloc: error: --lsmod: {bad}:3: not UTF-8 text "
                            "(invalid start byte)\n")


# ---------------------------------------------------------------- bounded runs


@pytest.mark.parametrize("argv, line", LARGE, ids=[a for a, _ in LARGE])
def test_large_input_is_refused_within_a_second(capsys, argv, line):
    start = time.monotonic()
    rc, err = _main(capsys, argv)
    assert time.monotonic() - start < 1.0
    assert (rc, err) == (2, f"gpalloc: error: {line}\n")


def test_estimate_is_printed_for_a_long_run_and_not_for_a_short_one(capsys):
    assert main("experiment bpf-load --programs 64 --node-mem 1G".split()) == 0
    assert "estimate" not in capsys.readouterr().err
    est = budget.experiment_estimate("bpf-load", Calibration(node_mem="1G"), 2, programs=64)
    assert not est.announce() and est.refusal() is None


def test_cost_model_adds_up():
    cal = Calibration(node_mem="8G", pressure=0.3)
    one = budget.estimate(1000, 1, cal)
    two = budget.estimate(1000, 2, cal)
    assert two.seconds == pytest.approx(2 * one.seconds) and two.bytes == one.bytes
    fill = 8 * budget.SECONDS_PER_GIB
    assert one.seconds == pytest.approx(fill + 1000 * (budget.SECONDS_PER_EVENT
                                                       + budget.SECONDS_PER_PAGE))
    idle = budget.estimate(1000, 1, Calibration(node_mem="8G", pressure=0.0))
    assert idle.bytes == 1000 * budget.BYTES_PER_EVENT and idle.seconds < one.seconds


def _popen(*argv):
    return subprocess.Popen([sys.executable, "-m", "gpalloc", *argv], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_forced_long_run_shows_estimate_and_progress_then_ctrl_c_is_130():
    """bpf-churn --loads 1000000 (past the time bound): --force runs it, the estimate comes
    first, the progress bar at once, and SIGINT stops it with one summary line."""
    start = time.monotonic()
    proc = _popen("experiment", "bpf-churn", "--loads", "1000000", "--node-mem", "1G",
                  "--force")
    try:
        first = proc.stderr.readline()
        elapsed = time.monotonic() - start
        assert first == "gpalloc: estimate: 2 runs, 2,000,000 events: about 9.7 min and " \
                        "154 MB\n"
        assert elapsed < 3.0   # the interpreter's start included; main() itself < 1 s
        bar = ""
        while "256/1000000" not in bar and proc.poll() is None:   # the bar, updated
            bar += proc.stderr.read(1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and out == ""
    last = err.rstrip("\n").split("\n")[-1]
    assert last.startswith("gpalloc: interrupted after ")
    assert ": run 1 of 2 (baseline), " in last and last.endswith(" of 1,000,000 events; "
                                                                   "no results")


def test_ctrl_c_before_any_run(capsys, monkeypatch):
    import gpalloc.cli as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "run_experiment", interrupted)
    assert main("experiment bpf-load --programs 8 --node-mem 1G --quiet".split()) == 130
    assert capsys.readouterr().err == "gpalloc: interrupted after 0.0 s: before the first " \
                                      "run; no results\n"


# ---------------------------------------------------------------- --check


def test_check_runs_after_every_phase_of_every_kernel(capsys):
    argv = "experiment bpf-load --programs 32 --node-mem 1G --compare-kernels --quiet --json"
    assert main([*argv.split(), "--check"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert {run["checks"] for run in runs.values()} == {2}   # boot+pressure, bpf_load
    assert main(argv.split()) == 0
    assert all("checks" not in run for run in json.loads(capsys.readouterr().out)["runs"].values())


def test_check_failure_names_the_invariant(capsys, monkeypatch):
    import gpalloc.experiments as experiments

    def broken(self):
        raise InvariantError("invariant 'W^X' broken: pfn 0x1 is writable and executable")
    monkeypatch.setattr(experiments.Machine, "check", broken)
    assert main("experiment bpf-load --programs 8 --node-mem 1G --quiet --check".split()) == 1
    assert capsys.readouterr().err == ("gpalloc: check: invariant 'W^X' broken: pfn 0x1 is "
                                       "writable and executable\n")


def _rw_and_rox_areas(m):
    rw = m.vmalloc(4096)
    rox = m.module_alloc(4096)
    assert m.set_memory_ro(rox, 1) == 0 and m.set_memory_x(rox, 1) == 0
    return m.find_vm_area(rw), m.find_vm_area(rox)


def test_wx_audit_sees_a_pfn_mapped_twice():
    """RW through one area, X through another: each area alone is fine, the pfn is not."""
    m = Machine(node_mem="256M")
    rw, rox = _rw_and_rox_areas(m)
    check_w_xor_x(m.k)
    rox.pages[0] = rw.pages[0]
    with pytest.raises(InvariantError, match=r"W\^X.*another mapping"):
        check_w_xor_x(m.k)


@pytest.mark.parametrize("level", ["4k", "2m", "1g"])
def test_wx_audit_walks_every_direct_map_entry(level):
    """A W+X direct-map entry is caught whether or not any area maps its pfns."""
    from gpalloc.arch.x86.pgtable_types import _PAGE_NX, _PAGE_PRESENT, _PAGE_RW
    m = Machine(nodes=2, node_mem="1G")
    dm, wx = m.k.dmap, _PAGE_PRESENT | _PAGE_RW
    check_w_xor_x(m.k)
    if level == "4k":
        table = next(iter(dm.pte.values()))
        table[7] &= ~_PAGE_NX
        table[7] |= wx
    elif level == "2m":
        dm.pmd[600] = wx
    else:
        dm.gb[next(iter(dm.gb))] = wx
    with pytest.raises(InvariantError, match=r"W\^X.*direct-map"):
        check_w_xor_x(m.k)
