"""`make site`: the JupyterLite site builds, and in Chromium its Pyodide kernel runs the model.

The site is built with SITE_ARGS=--local-pyodide: Pyodide's core from npm, served by the site
itself from 127.0.0.1 (python -m http.server), so the kernel starts with no network. Then in
headless Chromium: the start-here notebook's first cell installs gpalloc with piplite, a Machine
prints its /proc/meminfo (the same text CPython's model prints), and an ipywidgets slider
re-runs the model (the same DirectMap numbers as CPython). Plots are not tried here: Pyodide's
numpy and matplotlib come only from its CDN (tests/test_pyodide_versions.py checks gpalloc's
plotting against their versions in CPython instead).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import ipywidgets
import pytest
from local_server import CHROMIUM, CHROMIUM_FLAGS, free_port, serving

import gpalloc
from gpalloc import Machine

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
START_HERE = ROOT / "lite" / "start-here.ipynb"
ARTIFACTS = ROOT / "tests" / "artifacts"
BUILD_TIMEOUT = 600
KERNEL_TIMEOUT = 120    # Pyodide boots, then piplite installs the kernel and gpalloc (~11 s here)
CELL_TIMEOUT = 60
SLIDER_STEP = 8         # start-here's slider: step 8 pages
KB_RE = re.compile(r"(\d[\d,]*) kB")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lite") / "site"
    wheels = out.parent / "wheels"
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "site", "NO_INSTALL=1",
         f"VENV={sys.prefix}", f"SITE_DIR={out}", f"WHEEL_DIR={wheels}",
         "SITE_ARGS=--local-pyodide"],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"make site failed:\n{proc.stdout[-3000:]}\n{proc.stderr}"
    return out


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _student_cells(nb: Path) -> list[dict]:
    spec = importlib.util.spec_from_file_location("editions", ROOT / "tools" / "editions.py")
    editions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(editions)
    return editions.student_notebook(json.loads(nb.read_text()))["cells"]


def test_site_has_the_student_edition_with_a_setup_cell(site: Path) -> None:
    files = site / "files"
    start = _cells(files / START_HERE.name)
    assert 'await piplite.install("gpalloc", deps=False)' in "".join(start[0]["source"])
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        copied = _cells(files / nb.name)
        assert "jupyterlite-setup" in copied[0]["metadata"]["tags"], nb.name
        assert 'piplite.install("gpalloc", deps=False)' in "".join(copied[0]["source"])
        assert copied[1:] == _student_cells(nb), \
            f"{nb.name}: the site's copy differs from the student edition beyond its setup"


def test_site_bundles_gpalloc_and_ipywidgets(site: Path) -> None:
    index = json.loads((site / "pypi" / "all.json").read_text())
    assert list(index["gpalloc"]["releases"]) == [gpalloc.__version__]
    assert list(index["ipywidgets"]["releases"]) == [ipywidgets.__version__]
    for release in (index["gpalloc"], index["ipywidgets"]):
        for files in release["releases"].values():
            assert all((site / "pypi" / f["url"]).is_file() for f in files)


def test_site_serves_its_own_pyodide(site: Path) -> None:
    config = json.loads((site / "jupyter-lite.json").read_text())["jupyter-config-data"]
    kernel = config["litePluginSettings"]["@jupyterlite/pyodide-kernel-extension:kernel"]
    assert kernel["pyodideUrl"] == "./static/pyodide/pyodide.mjs"
    assert kernel["disablePyPIFallback"] is True
    pyodide = site / "static" / "pyodide"
    lock = json.loads((pyodide / "pyodide-lock.json").read_text())["packages"]
    present = [p for p in lock.values() if (pyodide / p["file_name"]).is_file()]
    assert {p["name"] for p in present} >= {"micropip", "ipython", "jedi"}
    for p in present:
        digest = hashlib.sha256((pyodide / p["file_name"]).read_bytes()).hexdigest()
        assert digest == p["sha256"], p["file_name"]


def _model_table(pages: int) -> list[str]:
    """What start-here's slider cell shows for this many pages, computed in CPython."""
    numbers = []
    for patches in ((), (1, 2, 3)):
        m = Machine(node_mem="1G", patches=patches, seed=0)
        m.set_memory_pressure(0.3)
        for i in range(pages):
            addr = m.module_alloc(4096)
            m.set_vm_flush_reset_perms(addr)
            m.set_memory_ro(addr, 1)
            if i % 2:
                m.vfree(addr)
        info = m.meminfo()
        numbers += [f"{info['DirectMap4k']:,}", f"{info['DirectMap2M']:,}"]
    return numbers


@pytest.mark.browser
def test_site_runs_the_model_in_chromium(site: Path, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"!!! BROWSER TEST NOT RUN: no Chromium at {CHROMIUM} "
                    "(apt-get install -y chromium; .ci/run does this) !!!")
    from playwright.sync_api import sync_playwright

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
           "--directory", str(site)]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with serving(cmd, f"{base}/jupyter-lite.json", tmp_path / "http.log", 30), \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            console = []
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            try:
                _drive(page, base)
            except Exception:
                print("browser console:\n" + "\n".join(console[-40:]))
                raise
            finally:
                page.screenshot(path=str(ARTIFACTS / "jupyterlite.png"), full_page=True)
        finally:
            browser.close()


JS_CELL_DONE = """(i) => {
  const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[i];
  return !!cell && /\\[\\d+\\]/.test(cell.querySelector('.jp-InputPrompt').textContent);
}"""


JS_CELL_STARTED = """(i) => {
  const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[i];
  return !!cell && /\\[(\\*|\\d+)\\]/.test(cell.querySelector('.jp-InputPrompt').textContent);
}"""


def _run_cell(page, i: int, timeout: float) -> str:
    """Run the i-th code cell (Shift+Enter), wait for its prompt number, return its output.

    Until its session has a kernel, JupyterLab drops an execute request (the prompt stays
    "[ ]"): press again until the cell is queued or running.
    """
    from playwright.sync_api import TimeoutError as PWTimeout

    cell = page.locator(".jp-Notebook .jp-CodeCell").nth(i)
    deadline = time.monotonic() + timeout
    while True:
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        try:
            page.wait_for_function(JS_CELL_STARTED, arg=i, timeout=5_000)
            break
        except PWTimeout:
            if time.monotonic() > deadline:
                raise
    page.wait_for_function(JS_CELL_DONE, arg=i,
                           timeout=max(1, deadline - time.monotonic()) * 1000)
    out = cell.locator(".jp-Cell-outputArea")
    errors = out.locator("[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, f"cell {i}: {errors.all_inner_texts()}"
    return out.inner_text()


def _drive(page, base: str) -> None:
    page.set_default_timeout(60_000)
    page.goto(f"{base}/lab/index.html?path={START_HERE.name}")
    page.locator(".jp-Notebook .jp-CodeCell").first.wait_for()
    t0 = time.monotonic()
    _run_cell(page, 0, KERNEL_TIMEOUT)      # the kernel starts, piplite installs gpalloc
    print(f"kernel start and piplite installs: {time.monotonic() - t0:.1f} s")

    meminfo = _run_cell(page, 1, CELL_TIMEOUT)
    assert meminfo.strip() == Machine().proc_meminfo().strip()

    table = page.locator(".jp-Notebook .jp-CodeCell").nth(2).locator(".widget-html")
    _run_cell(page, 2, CELL_TIMEOUT)
    table.wait_for()
    assert KB_RE.findall(table.inner_text()) == _model_table(0)
    handle = page.locator(".jp-Notebook .jp-CodeCell").nth(2).locator(".noUi-handle").first
    before = table.inner_text()
    handle.focus()
    handle.press("ArrowRight")
    page.wait_for_function("([el, before]) => el.innerText !== before",
                           arg=[table.element_handle(), before], timeout=CELL_TIMEOUT * 1000)
    assert KB_RE.findall(table.inner_text()) == _model_table(SLIDER_STEP)
