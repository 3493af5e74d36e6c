"""gpalloc quiz: seeded questions (OSTEP style), the same scenario with or without answers.

Golden files: regenerate with
``python -m gpalloc quiz KIND --seed 3 -c > tests/golden/quiz-KIND-seed3-c.txt``
after checking that a changed answer is an intended model change.
"""

from pathlib import Path

import pytest

from gpalloc.cli import main
from gpalloc.quiz import KINDS, quiz

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("kind", KINDS)
def test_answers_match_golden(kind, capsys):
    assert main(["quiz", kind, "--seed", "3", "-c"]) == 0
    assert capsys.readouterr().out == (GOLDEN / f"quiz-{kind}-seed3-c.txt").read_text()


@pytest.mark.parametrize("kind", KINDS)
def test_question_is_the_answered_text_without_the_answer(kind):
    question = quiz(kind, seed=3)
    answered = quiz(kind, seed=3, compute=True)
    assert answered.startswith(question + "\n")
    answer = answered[len(question) + 1:]
    assert answer.startswith("Why")                      # the reasoning, then the numbers
    assert "\nA: " in answer or answer.startswith("A: ")
    assert "A: " not in question and "Why" not in question
    assert question.splitlines()[0] == f"gpalloc quiz {kind}  seed=3"


@pytest.mark.parametrize("kind", KINDS)
def test_seeds_give_different_scenarios(kind):
    texts = {quiz(kind, seed=s) for s in range(8)}
    assert len(texts) > 1


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown kind 'nope'"):
        quiz("nope")
