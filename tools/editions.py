"""Two editions of the course from one source: ``python tools/editions.py student OUT_DIR``.

The source notebooks (notebooks/) are the instructor edition: everything, with outputs,
saved without widget views or widget state (``python tools/editions.py instructor NB...``
strips them after ``make notebooks`` executes a notebook: a saved view cannot work
without its kernel, and each panel's plain-text line says to run the cell instead).
Cells are tagged in their metadata:

* ``solution`` — the "Solution." heading and the ``show_answer(...)`` cell of an exercise;
* ``explanation`` — the worked explanation that follows an answer;
* ``answer`` — the cell that defines an exercise's answer function (Reveal calls it).

The student edition drops ``solution`` and ``explanation`` cells, hides the source of
``answer`` cells (the Reveal button still runs them; a learner can expand them), and
clears every output, so nothing is on screen before the learner predicts.
``python tools/editions.py check`` fails if an exercise cell is untagged or a source
notebook carries a saved widget view.
"""

import argparse
import copy
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "notebooks"
DROPPED = {"solution", "explanation"}
HIDDEN = "answer"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def tags(cell):
    """The cell's tags (a set)."""
    return set(cell.get("metadata", {}).get("tags", ()))


def student_notebook(nb):
    """The student edition of one notebook (a new dict; the source is not changed)."""
    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb["cells"]:
        if tags(cell) & DROPPED:
            continue
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
            if HIDDEN in tags(cell):
                cell["metadata"].setdefault("jupyter", {})["source_hidden"] = True
        cells.append(cell)
    nb["cells"] = cells
    nb["metadata"].pop("widgets", None)   # saved widget state belongs to the outputs
    return nb


def instructor_notebook(nb):
    """The instructor edition as saved: outputs kept, widget views and widget state dropped."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        for out in cell.get("outputs", ()):
            out.get("data", {}).pop(WIDGET_VIEW, None)
    nb["metadata"].pop("widgets", None)
    return nb


def _write(path, nb):
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n",
                    encoding="utf-8")


def write_student(out_dir, source=SOURCE):
    """Write the student edition of every source notebook into out_dir; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(source.glob("*.ipynb")):
        nb = student_notebook(json.loads(path.read_text(encoding="utf-8")))
        target = out_dir / path.name
        _write(target, nb)
        written.append(target)
    return written


SHOW_ANSWER = re.compile(r"^\s*show_answer\(", re.M)
SOLUTION_HEADING = re.compile(r"^\s*\*\*(Worked solution|Solution)\b")


def problems(nb, name):
    """Untagged exercise cells (show_answer calls, Solution headings), saved widget views."""
    out = [f"{name}: saved widget state (run tools/editions.py instructor)"] \
        if "widgets" in nb.get("metadata", {}) else []
    for i, cell in enumerate(nb["cells"]):
        if any(WIDGET_VIEW in o.get("data", {}) for o in cell.get("outputs", ())):
            out.append(f"{name}: cell {i}: a saved widget view (run tools/editions.py instructor)")
        src = "".join(cell["source"])
        needs = (cell["cell_type"] == "code" and SHOW_ANSWER.search(src)) or \
            (cell["cell_type"] == "markdown" and SOLUTION_HEADING.match(src))
        if needs and "solution" not in tags(cell):
            out.append(f"{name}: cell {i}: an exercise's solution is not tagged 'solution'")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="tools/editions.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("student", help="write the student edition")
    s.add_argument("out_dir")
    i = sub.add_parser("instructor", help="strip widget views and state from notebooks, in place")
    i.add_argument("notebooks", nargs="+", type=Path)
    sub.add_parser("check", help="fail if an exercise cell is untagged or a widget view saved")
    args = p.parse_args(argv)
    if args.command == "student":
        for path in write_student(args.out_dir):
            print(path)
        return 0
    if args.command == "instructor":
        for path in args.notebooks:
            _write(path, instructor_notebook(json.loads(path.read_text(encoding="utf-8"))))
        return 0
    found = [line for path in sorted(SOURCE.glob("*.ipynb"))
             for line in problems(json.loads(path.read_text(encoding="utf-8")), path.name)]
    print("\n".join(found) or "every exercise is tagged")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
