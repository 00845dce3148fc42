"""Thresholds on the client's confidence score: RouteLLM's cost-performance threshold (how
few server calls recover a share of the gap) and a conformal risk-control threshold (how
low the bar can go while wrong answers let through stay under a target share)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from clients.eval.checkable.metrics import pgr


class CurvePoint(NamedTuple):
    """One threshold of the sweep: problems scoring below it go to the server."""

    threshold: float
    server_share: float
    accuracy: float
    pgr: float


class Cpt(NamedTuple):
    """The cheapest point reaching the target PGR (None when none does) and the whole curve."""

    share: float | None
    threshold: float | None
    curve: list[CurvePoint]


def cpt(
    scores: Sequence[float], client_correct: Sequence[int], server_correct: Sequence[int], target: float,
) -> Cpt:
    """RouteLLM's CPT(target): the smallest share of server calls whose PGR reaches target.

    For each threshold t (each distinct score, then +inf) the problems with score < t, the
    least confident first, get the server's correctness and the rest keep the client's:
    accuracy(t) = (Σ_{s<t} server + Σ_{s≥t} client) / n, PGR from it. Tied scores move
    together, since no threshold can split them."""
    n = len(scores)
    if n == 0 or len(client_correct) != n or len(server_correct) != n:
        raise ValueError("scores and both arms must cover the same, non-empty list of problems")
    client_right, server_right = sum(client_correct), sum(server_correct)
    order = sorted(range(n), key=lambda i: scores[i])
    right, escalated, curve = client_right, 0, []
    for t in [*sorted(set(scores)), math.inf]:
        while escalated < n and scores[order[escalated]] < t:
            i = order[escalated]
            right += server_correct[i] - client_correct[i]
            escalated += 1
        # PGR from the counts (n cancels), so a target of exactly 0.5 is not missed by rounding.
        curve.append(CurvePoint(t, escalated / n, right / n, pgr(right, client_right, server_right)))
    best = next((p for p in curve if p.pgr >= target), None)
    if best is None:
        return Cpt(share=None, threshold=None, curve=curve)
    return Cpt(share=best.server_share, threshold=best.threshold, curve=curve)


def conformal_threshold(scores: Sequence[float], correct: Sequence[int], *, alpha: float) -> float:
    """The smallest observed score t such that accepting the client's answer when score ≥ t
    keeps the conformal risk-control bound on wrong-and-accepted answers under alpha:

        R̂(t) = (1/n) Σ 1[sᵢ ≥ t and answer i wrong],   (n·R̂(t) + 1) / (n + 1) ≤ alpha.

    The loss is at most 1 and falls as t rises, so on a new exchangeable question the
    expected share of wrong answers let through is ≤ alpha (Angelopoulos et al., 2022).
    Returns +inf (escalate everything) when no score meets it."""
    n = len(scores)
    if n == 0 or len(correct) != n:
        raise ValueError("scores and correct must cover the same, non-empty list of problems")
    wrong_accepted = sum(1 for y in correct if not y)  # at t = min score everything is accepted
    order = sorted(range(n), key=lambda i: scores[i])
    k = 0
    for t in sorted(set(scores)):
        while k < n and scores[order[k]] < t:
            wrong_accepted -= 0 if correct[order[k]] else 1
            k += 1
        if wrong_accepted + 1 <= alpha * (n + 1):
            return t
    return math.inf


def let_through(scores: Sequence[float], correct: Sequence[int], threshold: float) -> float:
    """The observed share of all questions that are wrong yet accepted (score ≥ threshold)."""
    if not scores or len(correct) != len(scores):
        raise ValueError("scores and correct must cover the same, non-empty list of problems")
    return sum(1 for s, y in zip(scores, correct) if s >= threshold and not y) / len(scores)
