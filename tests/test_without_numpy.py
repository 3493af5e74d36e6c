"""The model runs without numpy and matplotlib (JupyterLite's offline kernel has neither).

A subprocess blocks every import of numpy and matplotlib, then imports gpalloc and its
experiments and CLI modules and boots a Machine; only plotting (gpalloc.viz, .widgets, the
arrays of gpalloc.views) needs them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from gpalloc import Machine

ROOT = Path(__file__).resolve().parent.parent

BLOCKED_RUN = textwrap.dedent("""
    import sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("numpy", "matplotlib"):
                raise ImportError(f"blocked: {name}")

    sys.meta_path.insert(0, Block())
    import gpalloc
    import gpalloc.cli
    import gpalloc.experiments
    from gpalloc import Machine

    m = Machine()
    a = m.module_alloc(4096)
    m.set_memory_ro(a, 1)
    print(m.proc_meminfo(), end="")
    try:
        import gpalloc.viz
    except ImportError as err:
        print("viz:", err, file=sys.stderr)
    assert not any(k.partition(".")[0] in ("numpy", "matplotlib") for k in sys.modules)
""")


def test_model_runs_with_numpy_and_matplotlib_blocked() -> None:
    proc = subprocess.run([sys.executable, "-c", BLOCKED_RUN], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    m = Machine()
    m.set_memory_ro(m.module_alloc(4096), 1)
    assert proc.stdout == m.proc_meminfo()
    # The blocker is real: plotting does need numpy.
    assert "viz: blocked: numpy" in proc.stderr
