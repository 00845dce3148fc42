"""Adaptive stop for the refinement loop: a measurable notion of "the answer changed little"."""

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


def stop_reason(*, index: int, planned: int, delta: float | None, threshold: float) -> str | None:
    """Why the loop stops after round `index` (0 is the first answer), or None to go on."""
    if delta is not None and delta < threshold:
        return f"converged: change {delta:.3f} < {threshold}"
    if index >= planned:
        return f"iterations done ({planned})"
    return None
