"""`make lab` works for everyone: as root it adds --allow-root, LAB_ARGS reach JupyterLab.

The real run uses this interpreter's venv as it is (NO_INSTALL=1, VENV=sys.prefix) so it does
not reinstall; CI runs as root, where JupyterLab exits at once without --allow-root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from local_server import free_port, http_get, serving

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "gpalloc-setup-test"
START_TIMEOUT = 90


def _make(*args: str) -> list[str]:
    return ["make", "--no-print-directory", "-C", str(ROOT), *args, "NO_INSTALL=1",
            f"VENV={sys.prefix}"]


def _dry_run(target: str, *args: str) -> str:
    return subprocess.run(_make("-n", target, *args), capture_output=True, text=True,
                          check=True).stdout


def test_lab_command_adds_allow_root_only_as_root() -> None:
    line = _dry_run("lab", "LAB_ARGS=--port 9999 --no-browser")
    assert ("--allow-root" in line) == (os.geteuid() == 0), line
    assert "--port 9999 --no-browser" in line, line


@pytest.mark.parametrize(("target", "install"), [("lab", "-e ."),
                                                 ("dashboard", "-e '.[workshop]'"),
                                                 ("venv", "-e '.[test,workshop]'")])
def test_each_target_installs_only_its_level(target: str, install: str) -> None:
    """From a fresh clone (no venv yet): students' `make lab` gets runtime dependencies only."""
    out = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "-n", target,
                          "VENV=/nonexistent/venv"], capture_output=True, text=True,
                         check=True).stdout
    installs = [line for line in out.splitlines() if "pip install" in line]
    assert len(installs) == 1 and installs[0].endswith(f" {install}"), installs


def test_make_lab_starts_jupyterlab(tmp_path: Path) -> None:
    port = free_port()
    args = (f"--no-browser --ip=127.0.0.1 --port={port} --ServerApp.port_retries=0 "
            f"--IdentityProvider.token={TOKEN}")
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    log = tmp_path / "make-lab.log"
    url = f"http://127.0.0.1:{port}/api/status?token={TOKEN}"
    with serving(_make("lab", f"LAB_ARGS={args}"), url, log, START_TIMEOUT, env=env):
        assert "started" in json.loads(http_get(url))
        assert b"JupyterLab" in http_get(f"http://127.0.0.1:{port}/lab?token={TOKEN}")
    text = log.read_text()
    command = next(line for line in text.splitlines() if "jupyter lab" in line)
    assert ("--allow-root" in command) == (os.geteuid() == 0), command
    assert f"--port={port}" in command, command
