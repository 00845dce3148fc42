"""The statistics against cases worked by hand (the working is in the comments)."""

from __future__ import annotations

import math

import pytest

from clients.eval.checkable.metrics import auroc, mcnemar_exact, paired_bootstrap_pgr, pgr, wilson
from clients.eval.checkable.thresholds import conformal_threshold, cpt, let_through


def test_wilson_against_hand_worked_intervals() -> None:
    # k=8, n=10, z=1.96: p=0.8, z²/n=0.38416, centre=(0.8+0.19208)/1.38416=0.716738,
    # half=1.96/1.38416·√(0.016+0.009604)=1.416021·0.160012=0.226581 -> (0.490157, 0.943319).
    assert wilson(8, 10) == pytest.approx((0.490157, 0.943319), abs=1e-6)
    # k=0: centre = half = 0.19208/1.38416 = 0.138770 -> (0, 0.277540), not the empty (0, 0).
    assert wilson(0, 10) == pytest.approx((0.0, 0.277540), abs=1e-6)
    with pytest.raises(ValueError):
        wilson(1, 0)


def test_pgr_is_the_share_of_the_gap_recovered() -> None:
    # client 0.6, server 0.8, arm 0.7: (0.7−0.6)/(0.8−0.6) = 0.5; the ends are 0 and 1.
    assert pgr(0.7, 0.6, 0.8) == pytest.approx(0.5)
    assert (pgr(0.6, 0.6, 0.8), pgr(0.8, 0.6, 0.8)) == (0.0, 1.0)
    with pytest.raises(ValueError, match="equal"):
        pgr(0.7, 0.6, 0.6)


def test_auroc_counts_pairs_and_half_ties() -> None:
    # correct at 0.9, 0.7; wrong at 0.8, 0.6. Pairs (correct, wrong): (0.9,0.8) yes, (0.9,0.6) yes,
    # (0.7,0.8) no, (0.7,0.6) yes -> 3/4.
    assert auroc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.75)
    # correct at 0.5, 0.9; wrong at 0.5, 0.1: (0.5,0.5) tie ½, (0.5,0.1) 1, (0.9,0.5) 1, (0.9,0.1) 1 -> 3.5/4.
    assert auroc([0.5, 0.5, 0.9, 0.1], [1, 0, 1, 0]) == pytest.approx(0.875)
    assert auroc([0.1, 0.9], [1, 0]) == 0.0
    with pytest.raises(ValueError):
        auroc([0.1, 0.2], [1, 1])


def test_mcnemar_exact_on_the_discordant_pairs() -> None:
    # A right and B wrong on 5, the reverse on 1, both right on 3: m=6,
    # p = 2·(C(6,0)+C(6,1))/2⁶ = 2·7/64 = 0.21875.
    a = [1] * 5 + [0] + [1] * 3
    b = [0] * 5 + [1] + [1] * 3
    assert mcnemar_exact(a, b) == (pytest.approx(0.21875), 5, 1)
    # 6 to 0: p = 2·1/64 = 0.03125; no discordant pair: p = 1.
    assert mcnemar_exact([1] * 6, [0] * 6).p_value == pytest.approx(0.03125)
    assert mcnemar_exact([1, 0], [1, 0]) == (1.0, 0, 0)


def test_the_bootstrap_interval_is_seeded_and_pinned_at_the_ends() -> None:
    client, server = [0, 1, 0, 1, 0, 0, 1, 0], [1, 1, 1, 0, 1, 0, 1, 1]
    arm = [1, 1, 0, 1, 1, 0, 1, 0]  # PGR = (5/8 − 3/8)/(6/8 − 3/8) = 2/3
    lo, hi = paired_bootstrap_pgr(arm, client, server, n=500, seed=1)
    assert lo <= 2 / 3 <= hi and (lo, hi) == paired_bootstrap_pgr(arm, client, server, n=500, seed=1)
    # An arm equal to the server recovers the whole gap in every resample, the client none.
    assert paired_bootstrap_pgr(server, client, server, n=200, seed=1) == (1.0, 1.0)
    assert paired_bootstrap_pgr(client, client, server, n=200, seed=1) == (0.0, 0.0)
    with pytest.raises(ValueError, match="tie"):
        paired_bootstrap_pgr(client, client, client, n=50, seed=1)


def test_cpt_escalates_the_least_confident_first() -> None:
    # client right on 2 of 4, server on 3. Escalating score < t:
    # t=0.1 none: 2 right, PGR 0;  t=0.2 {0}: 0→1, 3 right, PGR 1, share ¼;
    # t=0.3 {0,1}: 4 right, PGR 2;  t=0.4 {0,1,2}: 4;  t=inf all: 3 right, PGR 1, share 1.
    scores, client, server = [0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1], [1, 1, 1, 0]
    result = cpt(scores, client, server, 0.5)
    assert (result.share, result.threshold) == (0.25, 0.2)
    assert [p.pgr for p in result.curve] == [0.0, 1.0, 2.0, 2.0, 1.0]
    assert cpt(scores, client, server, 1.5).share == 0.5
    assert cpt(scores, client, server, 3.0) == (None, None, result.curve)


def test_cpt_moves_tied_scores_together() -> None:
    # Problems 0 and 1 tie at 0.2: escalating both swaps a right for a wrong (PGR 0, share ½);
    # adding problem 2 reaches PGR 1 at share ¾. Problem 0 alone would reach it at ¼.
    result = cpt([0.2, 0.2, 0.5, 0.9], [0, 1, 0, 1], [1, 0, 1, 1], 0.5)
    assert (result.share, result.threshold) == (0.75, 0.9)


SCORES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
CORRECT = [0, 0, 1, 0, 1, 1, 1, 1, 1]  # wrong at 0.1, 0.2 and 0.4; n = 9


@pytest.mark.parametrize(("alpha", "threshold"), [
    # Need (wrong accepted + 1)/10 ≤ alpha. Accepting s ≥ t lets through 3 wrong at t=0.1,
    # 2 at t=0.2, 1 at t=0.3 or 0.4, none from t=0.5.
    (0.3, 0.2),  # 3/10 ≤ 0.3
    (0.2, 0.3),  # 2/10 ≤ 0.2
    (0.1, 0.5),  # 1/10 ≤ 0.1
    (0.05, math.inf),  # even 1/10 > 0.05: escalate everything
    (0.4, 0.1),  # 4/10 ≤ 0.4: accept everything
])
def test_the_conformal_threshold_bounds_the_wrong_answers_let_through(alpha: float, threshold: float) -> None:
    assert conformal_threshold(SCORES, CORRECT, alpha=alpha) == threshold


def test_let_through_is_the_observed_share_of_all_questions() -> None:
    # At 0.3 the only wrong answer accepted is the one at 0.4: 1/9.
    assert let_through(SCORES, CORRECT, 0.3) == pytest.approx(1 / 9)
    assert let_through(SCORES, CORRECT, math.inf) == 0.0
