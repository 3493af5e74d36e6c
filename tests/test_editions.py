"""Student and instructor editions from one source (tools/editions.py)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("editions", ROOT / "tools" / "editions.py")
editions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(editions)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _cell(kind, source, tags=(), outputs=()):
    cell = {"cell_type": kind, "metadata": {"tags": list(tags)} if tags else {},
            "source": source}
    if kind == "code":
        cell.update(outputs=list(outputs), execution_count=3)
    return cell


def test_student_edition_drops_solutions_hides_answers_clears_outputs():
    out = [{"output_type": "stream", "name": "stdout", "text": "42\n"}]
    nb = {"metadata": {"widgets": {"state": {}}}, "nbformat": 4, "nbformat_minor": 5,
          "cells": [_cell("code", "def ex1_answer():\n    return 42\n", ["answer"], out),
                    _cell("code", "predict_reveal('q', ex1_answer).widget", (), out),
                    _cell("markdown", "**Solution.**", ["solution"]),
                    _cell("code", "show_answer(ex1_answer)", ["solution"], out),
                    _cell("markdown", "It is 42 because ...", ["explanation"]),
                    _cell("markdown", "## Next section")]}
    st = editions.student_notebook(nb)
    assert [c["source"][:12] for c in st["cells"]] == ["def ex1_answ", "predict_reve",
                                                       "## Next sect"]
    assert all(c.get("outputs") in (None, []) for c in st["cells"])
    assert st["cells"][0]["metadata"]["jupyter"]["source_hidden"] is True
    assert "widgets" not in st["metadata"] and len(nb["cells"]) == 6   # source untouched


def test_check_finds_an_untagged_solution():
    nb = {"cells": [_cell("code", "show_answer(f)"), _cell("markdown", "**Solution.**")]}
    assert len(editions.problems(nb, "x.ipynb")) == 2
    assert editions.main(["check"]) == 0     # the course itself is fully tagged


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_edition_of_the_course_shows_nothing_before_reveal(path, tmp_path):
    source = json.loads(path.read_text())
    (written,) = [p for p in editions.write_student(tmp_path, path.parent) if p.name == path.name]
    nb = json.loads(written.read_text())
    texts = ["".join(c["source"]) for c in nb["cells"]]
    assert not any(editions.tags(c) & editions.DROPPED for c in nb["cells"])
    assert not any(editions.SHOW_ANSWER.search(t) or editions.SOLUTION_HEADING.match(t)
                   for t in texts)
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
    reveals = sum("predict_reveal(" in t for t in texts)
    assert reveals == sum("predict_reveal(" in "".join(c["source"]) for c in source["cells"])
    assert reveals >= 2
    for cell in nb["cells"]:
        if "answer" in editions.tags(cell):
            assert cell["metadata"]["jupyter"]["source_hidden"] is True


def test_instructor_edition_saves_no_widget_views_or_state():
    view = {"application/vnd.jupyter.widget-view+json": {"model_id": "abc"},
            "text/plain": "▶ panel: an interactive panel. Run this cell to use it."}
    nb = {"metadata": {"widgets": {"state": {}}}, "nbformat": 4, "nbformat_minor": 5,
          "cells": [_cell("code", "panel", (), [{"output_type": "execute_result",
                                                "data": dict(view), "metadata": {}}])]}
    assert len(editions.problems(nb, "x.ipynb")) == 2        # the state and the view
    saved = editions.instructor_notebook(nb)
    assert saved["cells"][0]["outputs"][0]["data"] == {"text/plain": view["text/plain"]}
    assert "widgets" not in saved["metadata"] and editions.problems(saved, "x.ipynb") == []
    assert "widgets" in nb["metadata"]                       # the source is not changed
