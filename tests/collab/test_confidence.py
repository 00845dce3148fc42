"""The cascade's confidence signals, worked by hand."""

from __future__ import annotations

import math
from typing import get_args

import pytest

from colm_serve.collab import confidence
from colm_serve.config import ConfidenceSignal


def test_every_configurable_signal_has_a_function():
    assert set(get_args(ConfidenceSignal)) == set(confidence.SIGNALS)


def test_signals_on_a_hand_worked_draft():
    lps = [-0.1, -0.2, -0.1, -2.0, -0.1, -0.1, -0.1, -0.1, -0.1, -0.1, -0.5, -0.1]
    got = confidence.scores(lps)
    assert got["mean"] == pytest.approx(sum(lps) / 12)  # -3.6 / 12 = -0.3
    assert got["min"] == -2.0
    assert got["p10"] == -0.5  # sorted: -2.0, -0.5, ...; floor(0.1 * 12) = 1 -> the second lowest
    # windows of 8: [0:8] sums to -2.8, [1:9] -2.8, [2:10] -2.7, [3:11] -3.1, [4:12] -1.2 -> -3.1 / 8
    assert got["window"] == pytest.approx(-3.1 / 8)
    assert got["brevity"] == pytest.approx(-math.log(12), abs=1e-6)


def test_a_draft_shorter_than_the_window_is_scored_by_its_mean():
    assert confidence.weakest_window([-1.0, -3.0]) == -2.0


def test_nothing_to_score_gives_no_scores():
    assert confidence.scores(None) == {} and confidence.scores([]) == {}
