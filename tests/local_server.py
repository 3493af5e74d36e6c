"""Start a server on 127.0.0.1 for a test, wait until it answers, and always stop it by pid.

Used by the tests that start `make lab`, `make dashboard` and the JupyterLite site. The server
runs in its own session (process group), so stopping it ends make, the shell and the server
together; Jupyter kernels start their own sessions and are ended one by one (psutil).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path(os.environ.get("GPALLOC_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def log_tail(log: Path, n: int = 40) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return "\n".join(lines[-n:])


def _descendants(pid: int) -> list:
    try:
        import psutil  # jupyter_server depends on it
    except ImportError:
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers, then any leftover child."""
    children = _descendants(proc.pid)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    for child in children:  # kernels live in their own sessions
        with contextlib.suppress(Exception):  # psutil.NoSuchProcess: already gone
            if child.is_running():
                child.kill()


@contextlib.contextmanager
def serving(cmd: list[str], url: str, log: Path, timeout: float, **popen) -> Iterator[
        subprocess.Popen]:
    """Run cmd until url answers (fail with the log's tail if it exits or times out)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, **popen)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"{cmd[0]} exited ({proc.returncode}) before {url} "
                                         f"answered:\n{log_tail(log)}")
                try:
                    http_get(url, timeout=2)
                    break
                except (OSError, urllib.error.URLError):
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{url} did not answer in {timeout} s:\n"
                                             f"{log_tail(log)}") from None
                    time.sleep(0.25)
            yield proc
        finally:
            stop(proc)
