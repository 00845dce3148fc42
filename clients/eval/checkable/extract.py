"""Take the gradable part out of a free-text answer, the way the official harnesses do:
the first fenced Python block for code, the "#### <number>" line (else the last number)
for GSM8K."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from colm_serve.collab.checks.code import fenced_code

__all__ = ["fenced_code", "code_for", "final_number", "as_number", "same_number"]

NUMBER = r"-?\$?\s*\d[\d,]*(?:\.\d+)?"
MARKED = re.compile(rf"####\s*({NUMBER})")
ANY_NUMBER = re.compile(NUMBER)


def code_for(answer: str, *, prefix: str = "", entry_point: str = "") -> str:
    """The program text of an answer: its fenced code, or the whole answer when there is none.

    When the code does not define `entry_point` it is taken as the body that completes
    `prefix` (HumanEval's signature and docstring), as a completion model would write it."""
    code = fenced_code(answer)
    if code is None:
        code = answer
    if prefix and entry_point and not re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", code):
        return prefix + code
    return code


def final_number(answer: str) -> str | None:
    """The number after the last "####", else the last number in the answer, else None."""
    marked = MARKED.findall(answer)
    found = marked or ANY_NUMBER.findall(answer)
    return found[-1] if found else None


def as_number(text: str) -> Decimal | None:
    """A number without its commas, "$" and trailing ".", so "1,000.00" equals "1000"."""
    cleaned = text.replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        return None


def same_number(answer: str, reference: str) -> bool:
    """Whether the answer's final number equals the reference exactly, as numbers."""
    found = final_number(answer)
    got, want = (as_number(found) if found else None), as_number(reference)
    if want is None:
        raise ValueError(f"the reference answer {reference!r} is not a number")
    return got is not None and got == want
