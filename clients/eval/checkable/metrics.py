"""Statistics of a routing comparison, as pure functions over per-problem 0/1 lists.

An "arm" answers every problem (the client model alone, the server alone, a routed mix);
lists given together are in the same problem order. Thresholds on the client's confidence
live in `thresholds.py`.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from typing import NamedTuple


def wilson(k: int, n: int, *, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials, p = k/n:
    centre = (p + z²/2n) / (1 + z²/n), half-width = z/(1 + z²/n) · √(p(1−p)/n + z²/4n²).
    Unlike p ± z√(p(1−p)/n) it stays in [0, 1] and is not empty at k = 0 or k = n."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"wilson needs 0 <= k <= n and n > 0, got k={k}, n={n}")
    p, zz = k / n, z * z
    centre = (p + zz / (2 * n)) / (1 + zz / n)
    half = z / (1 + zz / n) * math.sqrt(p * (1 - p) / n + zz / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def pgr(arm: float, client: float, server: float) -> float:
    """Performance gap recovered (RouteLLM): (arm − client) / (server − client), the share of
    the client-to-server accuracy gap the arm closes; 0 is the client, 1 the server."""
    if server == client:
        raise ValueError(f"PGR is undefined: the server and client accuracies are equal ({server})")
    return (arm - client) / (server - client)


def auroc(scores: Sequence[float], labels: Sequence[bool | int]) -> float:
    """Area under the ROC curve of `scores` for telling correct (label 1) from wrong answers:
    the Mann–Whitney U over pairs, P(score of a correct > score of a wrong), ties counting
    half, computed from average ranks: (Σ ranks of correct − n₁(n₁+1)/2) / (n₁·n₀)."""
    if len(scores) != len(labels):
        raise ValueError("scores and labels differ in length")
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        for j in range(start, end + 1):
            ranks[order[j]] = (start + end) / 2 + 1  # ties share their average rank
        start = end + 1
    n1 = sum(1 for y in labels if y)
    n0 = len(labels) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("AUROC needs both correct and wrong answers")
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0)


class McNemar(NamedTuple):
    """The exact McNemar test: b = A right and B wrong, c = A wrong and B right."""

    p_value: float
    b: int
    c: int


def mcnemar_exact(a_correct: Sequence[bool | int], b_correct: Sequence[bool | int]) -> McNemar:
    """Two-sided exact McNemar test: under "A and B are equally good" each of the b + c
    discordant problems goes either way with probability ½, so
    p = min(1, 2 · Σ_{i ≤ min(b, c)} C(b+c, i) / 2^(b+c)), and p = 1 when b + c = 0."""
    if len(a_correct) != len(b_correct):
        raise ValueError("the two arms answer different numbers of problems")
    b = sum(1 for x, y in zip(a_correct, b_correct) if x and not y)
    c = sum(1 for x, y in zip(a_correct, b_correct) if y and not x)
    m = b + c
    tail = sum(math.comb(m, i) for i in range(min(b, c) + 1))
    return McNemar(p_value=min(1.0, 2 * tail / 2**m), b=b, c=c)


def paired_bootstrap_pgr(
    arm: Sequence[int], client: Sequence[int], server: Sequence[int], *, n: int = 2000, seed: int,
) -> tuple[float, float]:
    """90% percentile interval of the PGR, resampling problems with replacement so that the
    three arms stay paired. Resamples where server and client tie (PGR undefined) are
    dropped; more than 10% of them means the gap is too small to report, and raises."""
    size = len(arm)
    if size == 0 or len(client) != size or len(server) != size:
        raise ValueError("the arms must answer the same, non-empty list of problems")
    rng = random.Random(seed)
    values = []
    for _ in range(n):
        pick = [rng.randrange(size) for _ in range(size)]
        s, c = sum(server[i] for i in pick), sum(client[i] for i in pick)
        if s != c:
            values.append((sum(arm[i] for i in pick) - c) / (s - c))
    if len(values) < 0.9 * n:
        raise ValueError(f"server and client tie in {n - len(values)} of {n} resamples; no PGR interval")
    cuts = statistics.quantiles(values, n=20, method="inclusive")  # 5%, 10%, ..., 95%
    return cuts[0], cuts[-1]
