"""gpalloc's plots and widgets against the numpy and matplotlib versions Pyodide ships.

The JupyterLite site's kernel gets Pyodide's own builds of numpy and matplotlib (and their
dependencies), whose versions differ from our pins. Those builds are not on PyPI or npm, but
PyPI has the same versions for CPython: this test reads them from the lock file of the npm
`pyodide` package the site uses (lite/build.py), installs them in a fresh venv, and runs
tests/test_viz.py and tests/test_widgets.py there. (CPython 3.11 here, Pyodide's is 3.14.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# numpy, matplotlib and what matplotlib needs, as Pyodide's lock file pins them.
PYODIDE_PINNED = ("numpy", "matplotlib", "contourpy", "cycler", "fonttools", "kiwisolver",
                  "packaging", "pillow", "pyparsing", "python-dateutil")
# Ours, for what the tests import beside the model and numpy/matplotlib.
OURS = ("ipywidgets", "pytest")
TESTS = ("tests/test_viz.py", "tests/test_widgets.py")


def _lite_build():
    spec = importlib.util.spec_from_file_location("lite_build", ROOT / "lite" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _our_pin(name: str) -> str:
    from importlib.metadata import version

    return f"{name}=={version(name)}"


def test_plots_and_widgets_with_pyodides_numpy_and_matplotlib(tmp_path: Path) -> None:
    core = _lite_build().npm_pyodide()
    lock = json.loads((core / "pyodide-lock.json").read_text())["packages"]
    pins = {name: lock[name]["version"] for name in PYODIDE_PINNED}
    pyodide = json.loads((core / "package.json").read_text())["version"]
    print(f"Pyodide {pyodide}: {pins}")
    readme = (ROOT / "README.md").read_text()
    for stated in (f"Pyodide itself ({pyodide},", f"numpy ({pins['numpy']})",
                   f"matplotlib ({pins['matplotlib']})"):
        assert stated in readme, f"README.md should say {stated!r}"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    install = subprocess.run(
        [py, "-m", "pip", "install", "--no-input", "--progress-bar", "off", "--only-binary=:all:",
         *(f"{n}=={v}" for n, v in pins.items()), *map(_our_pin, OURS)],
        capture_output=True, text=True, env=env, timeout=600)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr
    got = subprocess.run([py, "-c", "import numpy, matplotlib; "
                                    "print(numpy.__version__, matplotlib.__version__)"],
                         capture_output=True, text=True, env=env, check=True).stdout.split()
    assert got == [pins["numpy"], pins["matplotlib"]]

    env.update(PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    run = subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    print(run.stdout.strip().splitlines()[-1])
