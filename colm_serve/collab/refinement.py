"""A measurable notion of "the answer changed little", which ends guide's refinement loop."""

from __future__ import annotations

import re
from difflib import SequenceMatcher


def change(previous: str, current: str) -> float:
    """1 - word-level similarity in [0, 1]; 0 means the revision kept the answer word for word."""
    a, b = _words(previous), _words(current)
    if not a and not b:
        return 0.0
    return round(1.0 - SequenceMatcher(None, a, b, autojunk=False).ratio(), 4)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())
