"""The checkable tasks: the vendored files load, the split is disjoint and stable, answers
are read the way the official harnesses read them, and each grader tells right from wrong
on real problems."""

from __future__ import annotations

import pytest

from clients.eval.checkable.extract import code_for, fenced_code, final_number, same_number
from clients.eval.checkable.graders import GRADERS, grade
from clients.eval.checkable.tasks import LOADERS, Problem, UnknownTask, load, split

SIZES = {"gsm8k": 200, "humaneval": 164, "mbpp": 200}


def problem(task: str, pid: str) -> Problem:
    return next(p for p in load(task) if p.id == pid)


@pytest.mark.parametrize("task", sorted(SIZES))
def test_the_vendored_files_load_with_unique_ids(task: str) -> None:
    problems = load(task)
    assert len(problems) == SIZES[task] == len({p.id for p in problems})
    assert all(p.task == task and p.messages[0]["content"] for p in problems)
    if task != "gsm8k":
        assert all(p.entry_point and p.entry_point in p.tests for p in problems)


def test_the_registries_agree_and_an_unknown_task_names_the_known_ones() -> None:
    assert set(LOADERS) == set(GRADERS) == set(SIZES)
    with pytest.raises(UnknownTask, match="available tasks are gsm8k, humaneval, mbpp"):
        load("mmlu")


def test_the_split_is_disjoint_complete_and_stable() -> None:
    problems = [p for task in SIZES for p in load(task)]
    cal, test = split(problems, seed=7, calibration_share=0.3)
    keys = lambda ps: {(p.task, p.id) for p in ps}  # noqa: E731
    assert not keys(cal) & keys(test) and keys(cal) | keys(test) == keys(problems)
    assert 0.2 < len(cal) / len(problems) < 0.4
    # Another order, a subset, or another call: every problem stays on its side.
    again = split(list(reversed(problems[::3])), seed=7, calibration_share=0.3)
    assert keys(again.calibration) == keys(cal) & keys(problems[::3])
    assert keys(split(problems, seed=8, calibration_share=0.3).calibration) != keys(cal)


@pytest.mark.parametrize(("answer", "number"), [
    ("3 sprints * 3 times = 9 sprints.\n9 * 60 = 540\n#### 540", "540"),
    ("So the answer is $1,080.00.", "$1,080.00"),
    ("#### 12\nWait, no.\n#### 13", "13"),
    ("No digits here.", None),
])
def test_the_final_number_is_read_like_the_harness(answer: str, number: str | None) -> None:
    assert final_number(answer) == number


@pytest.mark.parametrize(("answer", "reference", "same"), [
    ("#### 18.00", "18", True), ("#### $1,080", "1080", True), ("The total is 17.", "18", False),
    ("#### -3", "-3", True), ("#### 18.5", "18", False),
])
def test_numbers_compare_as_numbers(answer: str, reference: str, same: bool) -> None:
    assert same_number(answer, reference) is same


def test_the_code_is_the_first_python_block_else_the_answer() -> None:
    answer = "Sure:\n```text\nnot code\n```\n```python\ndef f():\n    return 1\n```\n```python\nx = 2\n```"
    assert fenced_code(answer) == "def f():\n    return 1\n"
    assert fenced_code("```\nprint(1)\n```") == "print(1)\n"
    assert fenced_code("```python\ndef f():\n    return 1") == "def f():\n    return 1"  # cut off
    assert code_for("    return 1\n", prefix="def f():\n", entry_point="f") == "def f():\n    return 1\n"
    assert code_for("def f():\n    return 2\n", prefix="def f():\n", entry_point="f") == "def f():\n    return 2\n"


async def test_gsm8k_grades_a_right_and_a_wrong_answer() -> None:
    james = problem("gsm8k", "3")  # 3 sprints, 3 times a week, 60 m each: 540
    right = await grade(james, "He runs 3 * 3 = 9 sprints a week.\n9 * 60 = 540 meters.\n#### 540")
    wrong = await grade(james, "He runs 3 * 60 = 180 meters.\n#### 180")
    unfenced = await grade(james, "He runs 540 meters a week.")
    assert (right.correct, wrong.correct, unfenced.correct) == (True, False, True)
    assert "180" in wrong.detail


TRUNCATE_RIGHT = "Here it is:\n```python\ndef truncate_number(number: float) -> float:\n    return number % 1.0\n```\n"
TRUNCATE_WRONG = "```python\ndef truncate_number(number: float) -> float:\n    return number - 1\n```"
TRUNCATE_BODY = "    return number - int(number)\n"  # a completion: the body only, no fence


async def test_humaneval_grades_right_wrong_and_body_only_answers() -> None:
    truncate = problem("humaneval", "HumanEval/2")
    right, wrong, body = [await grade(truncate, a) for a in (TRUNCATE_RIGHT, TRUNCATE_WRONG, TRUNCATE_BODY)]
    assert (right.correct, wrong.correct, body.correct) == (True, False, True)
    assert wrong.detail.startswith("failed")


REMOVE_OCC_RIGHT = """```python
def remove_Occ(s, ch):
    first = s.find(ch)
    if first < 0:
        return s
    s = s[:first] + s[first + 1:]
    last = s.rfind(ch)
    return s if last < 0 else s[:last] + s[last + 1:]
```"""
REMOVE_OCC_WRONG = "```python\ndef remove_Occ(s, ch):\n    return s[1:-1]\n```"  # the ends, not the character
REMOVE_OCC_BARE = """def remove_Occ(s, ch):
    i = s.index(ch)
    s = s[:i] + s[i + 1:]
    j = s.rindex(ch)
    return s[:j] + s[j + 1:]
"""


async def test_mbpp_grades_right_wrong_and_unfenced_answers() -> None:
    remove_occ = problem("mbpp", "11")  # the first and last occurrence of a character
    assert "assert remove_Occ(\"hello\",\"l\") == \"heo\"" in remove_occ.question
    right, wrong, bare = [await grade(remove_occ, a) for a in (REMOVE_OCC_RIGHT, REMOVE_OCC_WRONG, REMOVE_OCC_BARE)]
    assert (right.correct, wrong.correct, bare.correct) == (True, False, True)


async def test_an_answer_that_is_not_code_is_wrong_not_an_exception() -> None:
    result = await grade(problem("mbpp", "11"), "I cannot help with that.")
    assert not result.correct and result.detail.startswith("error")
