"""Build the JupyterLite site: course notebooks, a start-here notebook, gpalloc and ipywidgets.

    python lite/build.py --wheels build/wheels --notebooks notebooks --output build/site \
        [--local-pyodide]

(`make site` runs this after `make wheel`.) The site's Python is Pyodide, loaded from its CDN
at run time, with gpalloc's wheel and ipywidgets bundled as piplite wheels, and the course
notebooks each get a setup cell in front (on the site's copy only). --local-pyodide serves a
Pyodide core from the site itself instead: the npm `pyodide` package (the core only) plus, from
PyPI, the pure-Python wheels the kernel needs to start, listed in a rewritten pyodide-lock.json.
That site runs offline but has no numpy or matplotlib (Pyodide's builds of them are not on PyPI
or npm), so it can run the model, not plot it; the browser test uses it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from jupyterlite_pyodide_kernel.constants import (
    PYODIDE_KERNEL_PLUGIN_ID,
    PYODIDE_PYTHON_VERSION,
    PYODIDE_VERSION,
)

ROOT = Path(__file__).resolve().parent.parent
WELCOME = ROOT / "lite" / "start-here.ipynb"
BUILD = ROOT / "build"
NPM_DIR = BUILD / "npm"
# Wheels the site installs with piplite. ipywidgets is pinned in pyproject.toml; the two
# packages it needs that neither Pyodide nor the kernel ships take this venv's versions, the
# ones the CPython tests run against. (The kernel brings a widgetsnbextension stand-in.)
PIPLITE_PACKAGES = ("ipywidgets", "jupyterlab_widgets", "comm")
# What the Pyodide kernel loads from Pyodide's lock file as it starts (micropip, then
# ipython and jedi, by the kernel's worker) — the roots of the lock closure a local core needs.
KERNEL_LOCK_ROOTS = ("micropip", "ipython", "jedi")
# Put in front of each course notebook's copy on the site (never in notebooks/ itself).
SETUP_TAG = "jupyterlite-setup"
SETUP_CELL = """\
# JupyterLite only (added by lite/build.py): install the model, then Pyodide's own numpy and
# matplotlib (these load from Pyodide's CDN).
import piplite

await piplite.install("gpalloc", deps=False)
await piplite.install(["ipywidgets", "numpy", "matplotlib", "tqdm"])
"""
CORE_FILES = ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip",
              "pyodide-lock.json", "package.json")


def run(cmd: list[str], **kw) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run(cmd, check=True, **kw)


def pip_download(specs: list[str], dest: Path, python_version: str | None = None) -> None:
    """Download exactly these wheels (no dependencies) from the package index."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-input", "--progress-bar", "off",
           "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    if python_version:
        cmd += ["--python-version", python_version, "--implementation", "py", "--abi", "none",
                "--platform", "any"]
    run(cmd + specs)


def piplite_wheels(gpalloc_wheel: Path, dest: Path) -> list[Path]:
    """gpalloc's wheel and the ipywidgets wheels, in dest."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy2(gpalloc_wheel, dest / gpalloc_wheel.name)
    pip_download([f"{name}=={version(name)}" for name in PIPLITE_PACKAGES], dest)
    return sorted(dest.glob("*.whl"))


def lock_closure(packages: dict, roots: tuple[str, ...]) -> list[str]:
    """The roots and everything they depend on in a pyodide-lock.json "packages" table."""
    keys = {_canonical(key): key for key in packages}
    seen, todo = [], list(roots)
    while todo:
        name = keys[_canonical(todo.pop())]
        if name not in seen:
            seen.append(name)
            todo += packages[name]["depends"]
    return sorted(seen)


def _canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them (the lock mixes '_' and '-')."""
    return name.lower().replace("_", "-").replace(".", "-")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def npm_pyodide() -> Path:
    """The npm `pyodide` package (the version the kernel expects) in build/npm; its folder."""
    run(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(NPM_DIR),
         f"pyodide@{PYODIDE_VERSION}"])
    return NPM_DIR / "node_modules" / "pyodide"


def local_pyodide(dest: Path) -> None:
    """A Pyodide core from npm, and PyPI's wheels for what the kernel loads from the lock."""
    core = npm_pyodide()
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in CORE_FILES:
        shutil.copy2(core / name, dest / name)
    lock = json.loads((core / "pyodide-lock.json").read_text())
    packages = lock["packages"]
    needed = lock_closure(packages, KERNEL_LOCK_ROOTS)
    pip_download([f"{name}=={packages[name]['version']}" for name in needed], dest,
                 python_version=PYODIDE_PYTHON_VERSION)
    wheels = {_canonical(w.name.split("-", 1)[0]): w for w in dest.glob("*.whl")}
    for name in needed:
        wheel = wheels[_canonical(name)]
        # PyPI's wheel, not Pyodide's rebuild of it: same version, its own file and hash.
        packages[name].update(file_name=wheel.name, sha256=sha256(wheel),
                              unvendored_tests=False)
    (dest / "pyodide-lock.json").write_text(json.dumps(lock))


def with_setup_cell(notebook: dict) -> dict:
    """The notebook with SETUP_CELL in front (each notebook has its own Pyodide kernel)."""
    cell = {"cell_type": "code", "execution_count": None, "id": "jupyterlite-setup",
            "metadata": {"tags": [SETUP_TAG]}, "outputs": [],
            "source": SETUP_CELL.splitlines(keepends=True)}
    return {**notebook, "cells": [cell, *notebook["cells"]]}


def stage_contents(notebooks: Path, dest: Path) -> None:
    """The site's files: the welcome notebook, and the course notebooks with a setup cell."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy2(WELCOME, dest / WELCOME.name)
    for nb in sorted(notebooks.glob("*.ipynb")):
        notebook = json.loads(nb.read_text())
        (dest / nb.name).write_text(json.dumps(with_setup_cell(notebook), indent=1) + "\n")


def lite_settings(offline: bool) -> dict:
    """jupyter-lite.json: offline, piplite must not try PyPI (it would hang, then fail)."""
    return {"jupyter-lite-schema-version": 0,
            "jupyter-config-data": {"litePluginSettings": {PYODIDE_KERNEL_PLUGIN_ID: {
                "disablePyPIFallback": offline}}}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheels", type=Path, default=BUILD / "wheels",
                    help="the folder `make wheel` put gpalloc's wheel in")
    ap.add_argument("--notebooks", type=Path, default=ROOT / "notebooks",
                    help="folder of .ipynb files to put on the site")
    ap.add_argument("--output", type=Path, default=BUILD / "site", help="the site's folder")
    ap.add_argument("--local-pyodide", action="store_true",
                    help="serve Pyodide's core from the site (offline; no numpy/matplotlib)")
    args = ap.parse_args(argv)
    if not args.notebooks.is_dir():
        ap.error(f"--notebooks: no such folder: {args.notebooks}")
    if not list(args.notebooks.glob("*.ipynb")):
        ap.error(f"--notebooks: no .ipynb files in {args.notebooks}")
    gpalloc_wheels = sorted(args.wheels.glob("gpalloc-*.whl"))
    if len(gpalloc_wheels) != 1:
        ap.error(f"--wheels: expected one gpalloc-*.whl in {args.wheels} (make wheel), "
                 f"found {len(gpalloc_wheels)}")

    work = BUILD / "site-work"
    lite_dir = work / "lite"
    shutil.rmtree(lite_dir, ignore_errors=True)
    lite_dir.mkdir(parents=True)
    (lite_dir / "jupyter-lite.json").write_text(json.dumps(lite_settings(args.local_pyodide)))
    if args.local_pyodide:
        # jupyterlite-pyodide-kernel serves <lite dir>/static/pyodide and points the kernel at it.
        local_pyodide(lite_dir / "static" / "pyodide")
    stage_contents(args.notebooks, work / "contents")
    wheels = piplite_wheels(gpalloc_wheels[0], work / "wheels")

    output = args.output.resolve()
    shutil.rmtree(output, ignore_errors=True)
    cmd = [sys.executable, "-m", "jupyter", "lite", "build", "--lite-dir", str(lite_dir),
           "--contents", str(work / "contents"), "--output-dir", str(output)]
    for wheel in wheels:
        cmd += ["--piplite-wheels", str(wheel)]
    run(cmd, cwd=lite_dir)
    print(f"site: {output} (serve it: python -m http.server -d {output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
