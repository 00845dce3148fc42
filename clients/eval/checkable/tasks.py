"""Checkable problems: the vendored GSM8K, HumanEval and MBPP rows turned into chat questions
plus what their graders need, and a calibration/test split that never moves a problem."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from clients.eval.checkable import prompts


class UnknownTask(ValueError):
    """A task name that has no loader or grader; the message lists the known ones."""

    def __init__(self, task: str, known: Sequence[str]) -> None:
        super().__init__(f"unknown checkable task {task!r}; available tasks are {', '.join(known)}")


@dataclass(frozen=True)
class Problem:
    """One problem: the question to send and what its grader needs.

    `answer` is GSM8K's final number; `code_prefix` is HumanEval's signature and docstring,
    put before an answer that only writes the body; `tests` is the program text run after
    the answer's code (HumanEval's check, MBPP's setup and asserts)."""

    task: str
    id: str
    question: str
    answer: str = ""
    code_prefix: str = ""
    tests: str = ""
    entry_point: str = ""

    @property
    def messages(self) -> list[dict[str, str]]:
        """The chat messages to send: one user turn."""
        return [{"role": "user", "content": self.question}]


def _gsm8k(row: dict) -> Problem:
    return Problem(
        task="gsm8k", id=str(row["id"]), question=prompts.GSM8K.format(question=row["question"]),
        answer=row["answer"],
    )


def _humaneval(row: dict) -> Problem:
    entry = row["entry_point"]
    return Problem(
        task="humaneval", id=row["id"], question=prompts.HUMANEVAL.format(prompt=row["prompt"]),
        code_prefix=row["prompt"], tests=f"{row['test']}\n\ncheck({entry})\n", entry_point=entry,
    )


def _mbpp(row: dict) -> Problem:
    question = prompts.MBPP.format(text=row["text"], first_test=row["test_list"][0])
    setup = row.get("test_setup_code", "")
    tests = "\n".join([setup, *row["test_list"]]) + "\n"
    return Problem(task="mbpp", id=str(row["id"]), question=question, tests=tests,
                   entry_point=row["entry_point"])


LOADERS: dict[str, Callable[[dict], Problem]] = {"gsm8k": _gsm8k, "humaneval": _humaneval, "mbpp": _mbpp}


def data_path(task: str) -> Path:
    """The vendored file of a task (see clients/eval/data/checkable/README.md)."""
    if task not in LOADERS:
        raise UnknownTask(task, list(LOADERS))
    return Path(str(resources.files("clients.eval") / "data" / "checkable" / f"{task}.jsonl"))


def load(task: str, *, path: Path | None = None) -> list[Problem]:
    """The problems of a task, from the vendored file unless `path` names another JSONL."""
    if task not in LOADERS:
        raise UnknownTask(task, list(LOADERS))
    lines = (path or data_path(task)).read_text(encoding="utf-8").splitlines()
    return [LOADERS[task](json.loads(line)) for line in lines if line.strip()]


class Split(NamedTuple):
    """Disjoint halves: thresholds are fitted on `calibration` and reported on `test`."""

    calibration: list[Problem]
    test: list[Problem]


def _unit(problem: Problem, seed: int) -> float:
    """A stable uniform number in [0, 1) from the seed, task and id (not Python's salted hash)."""
    digest = hashlib.sha256(f"{seed}:{problem.task}:{problem.id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split(problems: Sequence[Problem], *, seed: int, calibration_share: float) -> Split:
    """Put each problem on the calibration side when its hash falls below the share, so a
    problem stays on its side whatever else is in the list; input order is kept."""
    if not 0.0 <= calibration_share <= 1.0:
        raise ValueError(f"calibration_share must be in [0, 1], got {calibration_share}")
    calibration = [p for p in problems if _unit(p, seed) < calibration_share]
    test = [p for p in problems if _unit(p, seed) >= calibration_share]
    return Split(calibration=calibration, test=test)
