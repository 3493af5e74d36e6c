"""The built wheel, installed in a fresh venv with runtime dependencies only, runs every experiment.

`make wheel` builds it; a new venv gets `pip install <wheel>` (so exactly the runtime pins of
pyproject.toml, which tests/test_packaging.py checks against environment.yml); then every
experiment runs from outside the checkout, so only the data packaged in the wheel can be read.
Quick experiments must print what the checkout prints; fedora-bpf and the 4G ram-sweep must
reproduce the committed data/results/fedora-bpf-by-ram.csv rows.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
RESULTS_CSV = DATA / "results" / "fedora-bpf-by-ram.csv"
LSMOD = "lsmod/debian11-5.10-qemu-modules.txt"
TEST_ONLY = {"pytest", "nbval", "hypothesis", "ruff", "playwright"}
INSTALL_TIMEOUT = 600
RUN_TIMEOUT = 300

# Same output from the wheel as from the checkout (each ~1 s).
QUICK = {
    "bpf-load": ["experiment", "bpf-load", "--programs", "256", "--quiet", "--json"],
    "bpf-churn": ["experiment", "bpf-churn", "--loads", "500", "--quiet", "--json"],
    "quiz": ["quiz", "directmap", "--seed", "7", "-c"],
}


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH or venv leaking the checkout into the fresh venv."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["MPLBACKEND"] = "Agg"
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = RUN_TIMEOUT) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=_clean_env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout


def _json_without_timings(text: str) -> dict:
    """An experiment's JSON with its wall-clock fields dropped (they differ run to run)."""
    data = json.loads(text)
    for run in data["runs"].values():
        run.pop("seconds")
    return data


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    _run(["make", "--no-print-directory", "-C", str(ROOT), "wheel", "NO_INSTALL=1",
          f"VENV={sys.prefix}", f"WHEEL_DIR={out}"], cwd=ROOT)
    wheels = sorted(out.glob("gpalloc-*.whl"))
    assert len(wheels) == 1, f"make wheel made {wheels}"
    return wheels[0]


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=venv.parent)
    t0 = time.monotonic()
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-input",
          "--progress-bar", "off", str(wheel)], cwd=venv.parent, timeout=INSTALL_TIMEOUT)
    print(f"pip install of the wheel: {time.monotonic() - t0:.1f} s")
    return venv


def test_wheel_carries_every_data_file(wheel) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"gpalloc/_data/{p.relative_to(DATA).as_posix()}"
              for p in DATA.rglob("*") if p.is_file()}
    assert wanted, "data/ is empty"
    missing = sorted(wanted - names)
    assert not missing, f"{wheel.name} lacks {missing[:10]} (of {len(missing)})"
    assert not any(n.startswith("data/") for n in names), "data/ must be under gpalloc/_data"


def test_fresh_venv_has_exactly_the_runtime_pins(fresh_venv) -> None:
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    pins = dict(re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", s).groups()
                for s in project["dependencies"])
    listed = json.loads(_run([str(fresh_venv / "bin" / "python"), "-m", "pip", "list",
                              "--format", "json"], cwd=fresh_venv))
    installed = {p["name"].lower().replace("_", "-"): p["version"] for p in listed}
    assert {name: installed.get(name) for name in pins} == pins
    assert not TEST_ONLY & installed.keys(), "a runtime install must not bring the test extra"


def test_wheel_runs_every_experiment(fresh_venv, tmp_path) -> None:
    py = str(fresh_venv / "bin" / "python")
    where = _run([py, "-c", "import gpalloc.resources as r; print(r.data_root())"], cwd=tmp_path)
    data_root = Path(where.strip())
    assert data_root.is_relative_to(fresh_venv), f"data read from {data_root}, not the wheel"
    lsmod = data_root / LSMOD
    assert lsmod.is_file()

    jobs = {name: [py, "-m", "gpalloc", *args] for name, args in QUICK.items()}
    jobs["modules"] = [py, "-m", "gpalloc", "experiment", "modules", "--lsmod", str(lsmod),
                       "--quiet", "--json"]
    jobs["fedora-bpf"] = [py, "-m", "gpalloc", "experiment", "fedora-bpf", "--quiet", "--json"]
    jobs["ram-sweep"] = [py, "-m", "gpalloc", "ram-sweep", "--sizes", "4G", "--quiet", "--csv"]
    # The two ~20 s runs go side by side (CI has 2 cores); the quick ones follow on.
    env = _clean_env()
    procs = {name: subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
             for name, cmd in jobs.items()}
    out = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
            assert proc.returncode == 0, f"{name} from the wheel failed:\n{stderr}"
            out[name] = stdout
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    for name, args in QUICK.items():
        mine = _run([sys.executable, "-m", "gpalloc", *args], cwd=ROOT)
        if "--json" in args:
            assert _json_without_timings(out[name]) == _json_without_timings(mine), name
        else:
            assert out[name] == mine, name
    mine = _run([sys.executable, "-m", "gpalloc", "experiment", "modules", "--lsmod",
                 str(DATA / LSMOD), "--quiet", "--json"], cwd=ROOT)
    wheel_run, checkout_run = _json_without_timings(out["modules"]), _json_without_timings(mine)
    assert wheel_run["workload"].pop("lsmod") == str(lsmod)
    checkout_run["workload"].pop("lsmod")
    assert wheel_run == checkout_run

    with RESULTS_CSV.open(newline="") as f:
        committed = {row["node_mem"]: row for row in csv.DictReader(f)}
    swept = list(csv.DictReader(out["ram-sweep"].splitlines()))
    assert swept == [committed["4G"]]
    fedora = json.loads(out["fedora-bpf"])
    assert fedora["machine"]["node_mem"] == "8G"
    assert fedora["runs"]["baseline"]["DirectMap4k"] == int(committed["8G"]["baseline_4k_kb"])
    assert fedora["runs"]["grouped"]["DirectMap4k"] == int(committed["8G"]["grouped_4k_kb"])
    assert fedora["reduction_pct"] == float(committed["8G"]["reduction_pct"])
