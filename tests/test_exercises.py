"""The student edition, run top to bottom, and every exercise's Reveal (make student-test).

Each notebook's student edition (tools/editions.py) is executed in a fresh kernel;
any error fails.  Then, in that kernel, every predict → reveal panel is given the
model's own answer, as a learner would type it, and revealed: each judged exercise
must say "right", its answer text (what the instructor edition's solution prints)
must show every number it judges, and a choice exercise must offer that answer.  The
exercises left unjudged (prose answers) are exactly the ones WORKSHOP.md lists.

Slow (the whole course, about four minutes): runs with --student-edition only.
"""

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("editions", ROOT / "tools" / "editions.py")
editions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(editions)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# exercises whose answer is an argument, not a value: Reveal shows it without a verdict.
# Matched by a prefix with no model number in it, so a regenerated figure cannot unlist it.
UNJUDGED = {"05_patch3_module_alloc_and_the_98_percent": ["Exercise: the model gives about"]}

CHECK = r"""
import gc, json
from gpalloc.widgets import PredictReveal, format_expected

def _shown(value):
    # the ways an answer text may print a number
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return [str(value)]
    forms = {str(value), f"{value:,}", f"{value:+,}"}
    if isinstance(value, float):
        forms |= {f"{value:.0f}", f"{value:.1f}", f"{value:.2f}"}
    return sorted(forms)

_report = []
for _panel in sorted((o for o in gc.get_objects() if isinstance(o, PredictReveal)),
                     key=lambda p: p.question):
    _row = {"question": _panel.question}
    if _panel.expect is not None:
        _expected = _panel.expect() if callable(_panel.expect) else _panel.expect
        _typed = format_expected(_expected)
        _box = _panel.controls["prediction"]
        _options = list(getattr(_box, "options", ()))
        _row["offered"] = not _options or _typed in _options
        if _row["offered"]:
            _box.value = _typed
        _panel.reveal()
        _values = _expected if isinstance(_expected, (tuple, list)) else (_expected,)
        _text = _panel.values["answer"] or ""
        _row.update(typed=_typed, verdict=_panel.values["verdict"], error=_panel.error,
                    missing=[str(v) for v in _values if isinstance(v, (int, float))
                             and not any(f in _text for f in _shown(v))])
    _report.append(_row)
print(json.dumps(_report))
"""


def run_student(path, tmp_path):
    """Execute path's student edition; the exercise report from its kernel."""
    (written,) = [p for p in editions.write_student(tmp_path, path.parent)
                  if p.name == path.name]
    nb = nbformat.read(written, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CHECK))
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    (out,) = [o for o in nb.cells[-1].outputs if o.get("name") == "stdout"]
    return json.loads(out["text"])


@pytest.mark.student
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_edition_runs_and_every_judged_exercise_is_right(path, tmp_path):
    report = run_student(path, tmp_path / "student")
    assert report, "no predict → reveal exercises found"
    unjudged = [row["question"] for row in report if "verdict" not in row]
    assert [q for q in unjudged
            if not any(q.startswith(p) for p in UNJUDGED.get(path.stem, ()))] == []
    assert len(unjudged) == len(UNJUDGED.get(path.stem, ()))
    for row in report:
        if "verdict" not in row:
            continue
        where = f"{path.stem}: {row['question'][:70]!r}"
        assert row["offered"], f"{where}: the model's answer {row['typed']!r} is not a choice"
        assert row["error"] == "", f"{where}: Reveal refused: {row['error']}"
        assert row["verdict"] == "right", f"{where}: typed {row['typed']!r} -> {row['verdict']}"
        assert row["missing"] == [], f"{where}: the answer text does not show {row['missing']}"
