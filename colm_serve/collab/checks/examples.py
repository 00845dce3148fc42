"""The `examples` check: run the draft's code against the examples its question shows.

A coding question often carries its own acceptance examples: `assert` lines in a fenced block
(MBPP shows one) or doctest lines in the docstring of the function to write (HumanEval). A
draft that fails one of them is wrong whatever its token confidence says, and a wrong draft
that the client model wrote with confidence is what a log-probability signal misses most.
Only the examples the user wrote are run, never anything the checker invents, so a pass means
"it does what the question showed", not that it is right.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from colm_serve.collab.checks.base import Verdict
from colm_serve.collab.checks.code import fenced_code, question_blocks
from colm_serve.collab.checks.isolation import Limits
from colm_serve.collab.checks.sandbox import Sandbox

# Run in the child after the draft's code; `{doctests!r}` is the docstrings' text.
DOCTEST_RUNNER = """
import doctest as _doctest
_test = _doctest.DocTestParser().get_doctest({doctests!r}, dict(globals()), "examples", None, 0)
_report = []
_result = _doctest.DocTestRunner(optionflags=_doctest.NORMALIZE_WHITESPACE).run(_test, out=_report.append)
assert _result.failed == 0, ("%d of %d doctest examples failed: " % _result) + " ".join("".join(_report).replace("*" * 70, "").split())[:300]
"""


@dataclass(frozen=True)
class Examples:
    """What a question shows: top-level `assert` lines and docstrings holding `>>>` examples."""

    asserts: tuple[str, ...] = ()
    doctests: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return len(self.asserts) + sum(d.count(">>>") for d in self.doctests)


def examples(question: str) -> Examples:
    """The runnable examples in the question's fenced blocks. A block may mix prose and code
    (MBPP's problem text above its assert), so each `assert` line must parse on its own."""
    asserts: list[str] = []
    doctests: list[str] = []
    for block in question_blocks(question):
        asserts += [line.strip() for line in block.splitlines() if _is_assert(line.strip())]
        doctests += _docstring_examples(block)
    return Examples(tuple(asserts), tuple(doctests))


def _is_assert(line: str) -> bool:
    if not line.startswith("assert "):
        return False
    try:
        return isinstance(ast.parse(line).body[0], ast.Assert)
    except SyntaxError:
        return False


def _docstring_examples(block: str) -> list[str]:
    """The docstrings with `>>>` lines, read by the parser: a raw block would hand doctest the
    closing quotes as part of the last example's expected output."""
    if ">>>" not in block:
        return []
    try:
        tree = ast.parse(block)
    except SyntaxError:
        return []
    owners = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    docs = (ast.get_docstring(node) for node in ast.walk(tree) if isinstance(node, owners))
    return [doc for doc in docs if doc and ">>>" in doc]


def program(code: str, shown: Examples) -> str:
    """The draft's code, then the question's asserts, then its doctests."""
    parts = [code, *shown.asserts]
    if shown.doctests:
        parts.append(DOCTEST_RUNNER.format(doctests="\n".join(shown.doctests)))
    return "\n\n".join(parts) + "\n"


class ExamplesCheck:
    """Runs each draft in the sandbox (a child process bounded in time, memory and reach); the
    sandbox is made on first use, inside the event loop that serves the requests."""

    name = "examples"

    def __init__(self, *, timeout_s: float, concurrency: int | None = None) -> None:
        self.limits = Limits(timeout_s=timeout_s)
        self.concurrency = concurrency
        self._sandbox: Sandbox | None = None

    async def run(self, question: str, draft: str) -> Verdict:
        shown = examples(question)
        if not shown.count:
            return Verdict(name=self.name, outcome="none", detail="the question shows no runnable example")
        code = fenced_code(draft)
        if code is None:
            return Verdict(name=self.name, outcome="failed", examples=shown.count, detail="the draft has no code block")
        if self._sandbox is None:
            self._sandbox = Sandbox(limits=self.limits, concurrency=self.concurrency)
        result = await self._sandbox.run(program(code, shown))
        detail = f"{shown.count} shown" if result.passed else result.summary()
        return Verdict(name=self.name, outcome="passed" if result.passed else "failed", examples=shown.count, detail=detail)
