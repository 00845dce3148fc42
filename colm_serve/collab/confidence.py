"""How sure the client model is of a draft, from its sampled tokens' log-probabilities.

Every signal is "higher is surer", so one rule serves them all: the draft stands when its
score is at least the threshold. The mean is what most cascades use; it lets a long run of easy
tokens hide the few where the model guessed, so the weakest spots are scored too: the lowest
token, a low quantile, and the weakest window (arXiv 2404.10136 finds windowed minima predict
errors better than averages). `benchmarks/quality.py` measures each one's AUROC (right drafts
against wrong ones) and `benchmarks/calibrate_cascade.py` picks one with its threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

WINDOW = 8  # tokens: about one short clause or one number with its unit


def mean(lps: Sequence[float]) -> float:
    return sum(lps) / len(lps)


def lowest(lps: Sequence[float]) -> float:
    return min(lps)


def p10(lps: Sequence[float]) -> float:
    ranked = sorted(lps)
    return ranked[min(len(ranked) - 1, math.floor(0.1 * len(ranked)))]


def weakest_window(lps: Sequence[float]) -> float:
    if len(lps) <= WINDOW:
        return mean(lps)
    total = sum(lps[:WINDOW])
    worst = total
    for i in range(WINDOW, len(lps)):
        total += lps[i] - lps[i - WINDOW]
        worst = min(worst, total)
    return worst / WINDOW


def brevity(lps: Sequence[float]) -> float:
    """Minus the log of the length: rambling drafts are wrong more often."""
    return -math.log(len(lps))


SIGNALS: dict[str, Callable[[Sequence[float]], float]] = {
    "mean": mean, "min": lowest, "p10": p10, "window": weakest_window, "brevity": brevity,
}


def scores(token_logprobs: Sequence[float] | None) -> dict[str, float]:
    """Every signal for one draft; empty when there is nothing to score."""
    if not token_logprobs:
        return {}
    return {name: round(fn(token_logprobs), 6) for name, fn in SIGNALS.items()}
