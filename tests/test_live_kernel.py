"""The live lab on the running kernel: small experiments that must leave nothing behind.

Opt-in (``pytest --live``, ``make live``); each test skips with its reason where the kernel or the
rights differ (not Linux, not root, SO_ATTACH_FILTER refused).  The programs are small (100
instructions, 9 pack chunks each), so they fit the pack the system already holds and the
direct map does not change: running these tests does not disturb later measurements.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gpalloc import cli
from gpalloc.live import read_capture
from gpalloc.live.fill import FILL_DIRS, FILL_PREFIX
from gpalloc.live.placement import prog_pages
from gpalloc.live.trace import INSTANCE_PREFIX, TRACEFS

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--insns", "100"]


@pytest.fixture(scope="module", autouse=True)
def live_kernel():
    if not sys.platform.startswith("linux"):
        pytest.skip(f"live kernel tests need Linux, this is {sys.platform}")
    if os.geteuid() != 0:
        pytest.skip("live kernel tests need root (tracefs, /proc/vmallocinfo)")
    from gpalloc.live.bpf import SockFprog, open_filter_socket

    try:
        open_filter_socket(SockFprog(1)).close()
    except OSError as err:
        pytest.skip(f"SO_ATTACH_FILTER refused here: {err}")


def _state() -> dict:
    """What a run must give back: descriptors, limits, signal handlers, mounts, leftovers."""
    return {
        "fds": sorted(os.listdir("/proc/self/fd")),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "handlers": {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM,
                                                      signal.SIGHUP)},
        "tracefs_mounted": (TRACEFS / "instances").is_dir(),
        "fills": sorted(str(p) for d in FILL_DIRS.values() for p in d.glob(f"{FILL_PREFIX}*")),
        "instances": sorted(p.name for p in (TRACEFS / "instances").glob(f"{INSTANCE_PREFIX}*"))
        if (TRACEFS / "instances").is_dir() else [],
        "filter_procs": _filter_procs(),
    }


def _filter_procs() -> list[str]:
    out = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "gpalloc-filter":
                out.append(comm.parent.name)
        except OSError:
            continue
    return out


def _phase(cap: dict, name: str) -> dict:
    return next(p for p in cap["phases"] if p["name"] == name)


def test_bpf_filters_capture_and_nothing_left(tmp_path, capsys):
    before = _state()
    rc = cli.main(["live", "bpf-filters", "--programs", "300", *SMALL, "--trace", "--fill",
                   "64M", "--fill-kind", "shmem", "--out", str(tmp_path), "--name", "t"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.startswith("gpalloc live bpf-filters  programs=300 insns=100 rounds=1 fill=64M")
    assert f"capture written to {tmp_path / 't'}" in out
    assert _state() == before
    cap = read_capture(tmp_path / "t")
    assert [p["name"] for p in cap["phases"]] == ["00-before", "01-filled", "02-loaded-r1",
                                                  "03-closed-r1", "04-released"]
    assert cap["provenance"]["completed"] is True
    loaded, closed = _phase(cap, "02-loaded-r1"), _phase(cap, "03-closed-r1")
    assert loaded["meta"]["programs_held"] == 300
    assert _phase(cap, "01-filled")["meta"]["fill_bytes"] == 64 << 20
    # One struct bpf_prog page per 100-instruction program, each seen being allocated.
    assert len(prog_pages(loaded["trace"])) == 300
    assert len(closed["meta"]["packs"]) == len(_phase(cap, "00-before")["meta"]["packs"])
    shmem = [p["meminfo"]["Shmem"] for p in cap["phases"]]
    assert shmem[1] - shmem[0] >= 60 * 1024 and shmem[-1] - shmem[0] < 4 * 1024


def test_model_predicts_this_kernels_run(tmp_path, capsys):
    """Measure this kernel now, then the 6.18 model started from the run's own 00-before."""
    from gpalloc.validate import compare, format_validation, report

    before = _state()
    rc = cli.main(["live", "bpf-filters", "--programs", "400", *SMALL, "--rounds", "2",
                   "--out", str(tmp_path), "--name", "m"])
    capsys.readouterr()
    assert rc == 0 and _state() == before
    rows = compare(tmp_path / "m", seeds=(0, 1))
    assert [r["phase"] for r in rows] == ["02-loaded-r1", "04-loaded-r2"]
    print(format_validation(report(rows, (0, 1))))   # with -s: the model-vs-real table
    for r in rows:
        assert r["exact_1g"], r
        assert r["within_4k"], f"{r['phase']}: model {r['model']} vs real {r['real']}"


def test_bpf_procs_reaps_every_child(tmp_path, capsys):
    before = _state()
    rc = cli.main(["live", "bpf-procs", "--programs", "50", *SMALL, "--trace",
                   "--out", str(tmp_path), "--name", "p"])
    assert rc == 0, capsys.readouterr()
    assert _state() == before
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
    loaded = _phase(read_capture(tmp_path / "p"), "02-loaded-r1")
    children = {e["pid"] for e in loaded["trace"] if e["task"] == "gpalloc-filter"}
    assert len(children) == 50          # event-fork followed every child


def test_timeout_cleans_up(tmp_path, capsys):
    before = _state()
    rc = cli.main(["live", "bpf-filters", "--programs", "100", *SMALL, "--hold", "5",
                   "--timeout", "1", "--out", str(tmp_path), "--name", "x"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "--timeout: reached while holding the programs" in err
    assert _state() == before
    prov = read_capture(tmp_path / "x")["provenance"]
    assert prov["completed"] is False and "--timeout" in prov["error"]


@pytest.mark.parametrize("kind, sig", [("bpf-filters", signal.SIGINT),
                                       ("bpf-procs", signal.SIGTERM)])
def test_signal_cleans_up(tmp_path, kind, sig):
    before = _state()
    cmd = [sys.executable, "-m", "gpalloc", "live", kind, "--programs", "50", *SMALL,
           "--trace", "--fill", "32M", "--fill-kind", "shmem", "--hold", "30",
           "--out", str(tmp_path), "--name", "s"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    loaded = tmp_path / "s" / "phases" / "02-loaded-r1" / "phase.json"
    deadline = time.monotonic() + 30
    while not loaded.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loaded.is_file(), proc.communicate(timeout=30)
    time.sleep(0.3)                      # inside the --hold sleep now
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, (out, err)
    assert err.count("\n") == 1 and f"interrupted ({sig.name})" in err, err
    after = _state()
    assert {k: after[k] for k in ("tracefs_mounted", "fills", "instances", "filter_procs")} == \
        {k: before[k] for k in ("tracefs_mounted", "fills", "instances", "filter_procs")}
    prov = read_capture(tmp_path / "s")["provenance"]
    assert prov["completed"] is False and prov["phases"][-1] == "02-loaded-r1"


UNPRIVILEGED = """
import os, platform, shutil, sys
import gpalloc.cli, gpalloc.live.cli as live_cli, gpalloc.live.experiment, gpalloc.live.snapshot
platform.uname(); platform.python_version()        # caches; /root may be closed to nobody
parser = gpalloc.cli.build_parser()
runs = [parser.parse_args(["live", "bpf-filters", "--programs", "50", "--insns", "100",
                           *extra, "--out", sys.argv[1], "--name", name])
        for name, extra in (("plain", []), ("traced", ["--trace"]))]
os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
print(live_cli.run(runs[0]))
try:
    live_cli.run(runs[1])
except PermissionError as err:
    print("refused:", err)
"""


@pytest.fixture
def open_tmp():
    """A folder nobody can write (pytest's tmp_path is inside a root-only folder)."""
    with tempfile.TemporaryDirectory(prefix="gpalloc-live-test-") as name:
        os.chmod(name, 0o777)
        yield Path(name)


def test_without_root_filters_load_and_root_files_are_skipped(open_tmp):
    """Dropped to nobody (uid 65534): filters still load; root-only files are skipped."""
    tmp_path = open_tmp
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", UNPRIVILEGED, str(tmp_path)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "root=no" in done.stdout
    assert "refused: --trace: needs root" in done.stdout
    assert not (tmp_path / "traced").exists()
    cap = read_capture(tmp_path / "plain")
    assert cap["provenance"]["root"] is False
    loaded = _phase(cap, "02-loaded-r1")
    assert loaded["meta"]["packs"] is None
    assert {"pagetypeinfo", "slabinfo", "vmallocinfo"} <= set(loaded["meta"]["skipped"])
    assert "pagetypeinfo" not in loaded and "meminfo" in loaded and "zoneinfo" in loaded
