"""Regenerate every committed model output after an intended model change (``make regenerate``).

One command for all of them, in the order they depend on each other:

1. ``goldens``   tests/golden/*.txt (the commands the golden tests name);
2. ``results``   data/results/*.csv (the RAM sweep, the fedora-bpf sensitivity table) and
   data/results/runs/ (the notebooks' committed runs and validation report, gpalloc.runcache);
3. ``notebooks`` notebooks/*.ipynb re-executed in place (``make notebooks``);
4. ``handout``   docs/handout.png (``make handout``).

Then it lists the prose that quotes a number which changed: every line of README.md,
data/README.md, WORKSHOP.md and the notebooks' markdown that contains an old value of a
results CSV as it is usually written ("76.6 %", "183,296 kB").  Those sentences explain old
numbers; re-read each one.  ``--only goldens,results`` runs a subset.
"""

import argparse
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RESULTS = ROOT / "data" / "results"
PROSE = ("README.md", "data/README.md", "WORKSHOP.md", "docs/reference/kernel-spec.md")
STEPS = ("goldens", "results", "notebooks", "handout")
# (golden file, the command that writes it): the same commands the golden tests run
GOLDENS = [("tests/golden/bpf-load-64-seed1.txt",
            ["experiment", "bpf-load", "--programs", "64", "--node-mem", "1G", "--seed", "1",
             "--quiet"])]
GOLDENS += [(f"tests/golden/quiz-{kind}-seed3-c.txt", ["quiz", kind, "--seed", "3", "-c"])
            for kind in ("directmap", "grouped", "shrinker")]
# (results file, the command that prints it as CSV)
RESULT_COMMANDS = [("fedora-bpf-by-ram.csv", ["ram-sweep", "--csv", "--quiet", "--jobs", "2"]),
                   ("fedora-bpf-sensitivity.csv", ["sensitivity", "--csv", "--quiet",
                                                   "--jobs", "2"])]


def gpalloc(args):
    """Run ``python -m gpalloc ARGS`` in the checkout; its stdout, or exit with its stderr."""
    proc = subprocess.run([PY, "-m", "gpalloc", *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"regenerate: python -m gpalloc {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def goldens():
    for path, args in GOLDENS:
        (ROOT / path).write_text(gpalloc(args), encoding="utf-8")
        print(f"wrote {path}")


def read_csv(path):
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def results():
    """Rewrite each results CSV; return {file: (old rows, new rows)}."""
    changed = {}
    for name, args in RESULT_COMMANDS:
        path = RESULTS / name
        old = read_csv(path)
        path.write_text(gpalloc(args), encoding="utf-8")
        changed[name] = (old, read_csv(path))
        print(f"wrote data/results/{name}")
    # the notebooks' committed runs (gpalloc.runcache), current by the model's fingerprint
    proc = subprocess.run([PY, "-m", "gpalloc.runcache"], cwd=ROOT, capture_output=True,
                          text=True)
    if proc.returncode:
        sys.exit(f"regenerate: python -m gpalloc.runcache failed:\n{proc.stderr}")
    print("wrote data/results/runs/")
    return changed


def make(target):
    subprocess.run(["make", "--no-print-directory", "NO_INSTALL=1", target], cwd=ROOT, check=True)


def handout():
    make("handout")
    (ROOT / "docs" / "handout.png").write_bytes((ROOT / "build" / "handout.png").read_bytes())
    print("wrote docs/handout.png")


def spellings(value):
    """How a CSV value is usually written in prose: 76.6 → "76.6 %", 183296 → "183,296"."""
    try:
        number = float(value)
    except ValueError:
        return []
    if number.is_integer() and "." not in value:
        n = int(number)
        return [f"{n:,}"] if abs(n) >= 1000 else []
    return [f"{number:.1f} %", f"{number:.1f}%"]


def prose_lines():
    """(file:line, text) of every prose line: the Markdown files and notebook markdown cells."""
    for rel in PROSE:
        path = ROOT / rel
        if path.exists():
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                yield f"{rel}:{i}", line
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        for n, cell in enumerate(cells):
            if cell["cell_type"] == "markdown":
                for line in "".join(cell["source"]).splitlines():
                    yield f"notebooks/{nb.name}:cell {n}", line


def stale_prose(changed):
    """Lines quoting a value that a results CSV no longer has."""
    old_values = set()
    for old, new in changed.values():
        now = {v for row in new for v in row.values()}
        old_values |= {v for row in old for v in row.values() if v not in now}
    needles = {s for v in old_values for s in spellings(v)}
    if not needles:
        return []
    pattern = re.compile("|".join(re.escape(s) for s in sorted(needles, key=len, reverse=True)))
    return [(where, line.strip()) for where, line in prose_lines() if pattern.search(line)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(STEPS),
                   help=f"comma-separated steps (default: all of {','.join(STEPS)})")
    args = p.parse_args(argv)
    steps = args.only.split(",")
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        p.error(f"--only: not one of {', '.join(STEPS)} (got {','.join(unknown)})")
    changed = {}
    if "goldens" in steps:
        goldens()
    if "results" in steps:
        changed = results()
    if "notebooks" in steps:
        make("notebooks")
    if "handout" in steps:
        handout()
    stale = stale_prose(changed)
    if stale:
        print(f"\n{len(stale)} prose lines quote a number the results no longer have; "
              "re-read them:")
        for where, line in stale:
            print(f"  {where}: {line[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
