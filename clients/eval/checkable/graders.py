"""Judge-free graders: GSM8K by the exact final number, HumanEval and MBPP by running the
answer's code against the problem's tests in the sandbox."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from clients.eval.checkable.extract import code_for, final_number, same_number
from clients.eval.checkable.tasks import Problem, UnknownTask
from colm_serve.collab.checks.sandbox import Sandbox


@dataclass(frozen=True)
class Grade:
    """Whether an answer is right, and a short why (the number read, or how the tests ended)."""

    correct: bool
    detail: str


async def grade_gsm8k(problem: Problem, answer: str, *, sandbox: Sandbox | None = None) -> Grade:
    """Right when the final number equals the reference (commas, "$" and zeros aside).
    It runs nothing; `sandbox` is there so that every grader has one signature."""
    found = final_number(answer)
    correct = same_number(answer, problem.answer)
    return Grade(correct=correct, detail=f"read {found!r}, expected {problem.answer!r}")


def program_for(problem: Problem, answer: str) -> str:
    """The program the tests run: the answer's code, then the problem's tests. HumanEval's
    signature and docstring go first when the answer only writes the body."""
    code = code_for(answer, prefix=problem.code_prefix, entry_point=problem.entry_point)
    return f"{code}\n\n{problem.tests}"


async def grade_code(problem: Problem, answer: str, *, sandbox: Sandbox | None = None) -> Grade:
    """Right when the answer's code passes every test of the problem within the limits.
    Without a sandbox a one-run sandbox is made, which is fine for a single call."""
    box = sandbox or Sandbox(concurrency=1)
    result = await box.run(program_for(problem, answer))
    return Grade(correct=result.passed, detail=result.summary())


Grader = Callable[..., Awaitable[Grade]]
GRADERS: dict[str, Grader] = {"gsm8k": grade_gsm8k, "humaneval": grade_code, "mbpp": grade_code}


async def grade(problem: Problem, answer: str, *, sandbox: Sandbox | None = None) -> Grade:
    """Grade an answer with its task's grader; share one Sandbox to grade many at once."""
    if problem.task not in GRADERS:
        raise UnknownTask(problem.task, list(GRADERS))
    return await GRADERS[problem.task](problem, answer, sandbox=sandbox)
