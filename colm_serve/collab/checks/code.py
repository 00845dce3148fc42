"""Python code in chat text: the block an answer's code is taken from (the way the official
HumanEval and MBPP harnesses take it), and the blocks a question shows."""

from __future__ import annotations

import re

# An opening fence with its language tag, then the body up to a closing fence at the start
# of a line, or the end (an answer cut off by the token limit has no closing fence).
FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.S | re.M)
# In a question both fences start a line: the prose around a block may name a fence in passing
# ("reply in a ```python block"), which must not open one.
LINE_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)
PYTHON_TAGS = frozenset({"python", "py", "python3"})


def fenced_code(answer: str) -> str | None:
    """The first ```python block, else the first block with no language tag, else None."""
    blocks = FENCE.findall(answer)
    for tag, body in blocks:
        if tag.lower() in PYTHON_TAGS:
            return body
    for tag, body in blocks:
        if not tag:
            return body
    return None


def question_blocks(question: str) -> list[str]:
    """Every closed fenced block of a question, in order, whatever its language tag."""
    return LINE_FENCE.findall(question)
