"""benchmarks/quality.py shares a cascade's calls with the arms that made the same ones, and
only those: a standing draft is the client alone's answer, an escalation to the server is the
server alone's answer only where the selector picked the specialist the server alone asked, and
an escalation to shepherd or guide is that strategy's answer only where no draft is attached."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest

from benchmarks.quality import NEVER, Answer, Arm, shared_drafts, shared_handovers
from benchmarks.quality import test_arms as quality_arms

FIT = {"signal": "mean", "threshold": -0.2}
TO_SERVER = Arm("cascade->server", "colm", {"strategy": "cascade", "threshold": -0.2, "escalate_to": "server"})
TO_SHEPHERD = Arm("cascade->shepherd", "colm", {"strategy": "cascade", "threshold": -0.2, "escalate_to": "shepherd"})


def _draft(pid: str, score: float | None, *, correct: bool = True) -> Answer:
    return Answer("client alone", "gsm8k", pid, text=f"draft {pid}", correct=correct,
                  confidence={} if score is None else {"mean": score})


def test_a_confident_draft_stands_and_an_unsure_or_unscored_one_does_not():
    kept, unsure = shared_drafts(TO_SERVER, [_draft("a", -0.1), _draft("b", -0.3), _draft("c", None)], FIT)
    assert [(k.pid, k.arm, k.escalated, k.cost_usd) for k in kept] == [("a", "cascade->server", False, 0.0)]
    assert unsure == {("gsm8k", "b"), ("gsm8k", "c")}


def test_no_draft_stands_below_a_threshold_no_score_reaches():
    kept, unsure = shared_drafts(TO_SERVER, [_draft("a", -0.01)], {"signal": "mean", "threshold": -NEVER})
    assert kept == [] and unsure == {("gsm8k", "a")}


def test_an_escalation_shares_the_server_alone_only_where_the_selector_picked_its_specialist():
    answers = [
        Answer("server alone", "gsm8k", "b", text="server b", correct=True, cost_usd=0.0004, server_tokens=400),
        Answer("shepherd", "gsm8k", "b", selected=["qwen-math"]),
        Answer("server alone", "gsm8k", "c", text="server c", cost_usd=0.0003),
        Answer("shepherd", "gsm8k", "c", selected=["gpt-conv"]),  # another specialist: another call
        Answer("server alone", "gsm8k", "d", error="APIError: down"),
        Answer("shepherd", "gsm8k", "d", selected=["qwen-math"]),
    ]
    shared = shared_handovers(TO_SERVER, {("gsm8k", "b"), ("gsm8k", "c"), ("gsm8k", "d"), ("gsm8k", "e")}, answers)
    assert [(a.pid, a.arm, a.text, a.correct, a.cost_usd, a.server_tokens, a.escalated) for a in shared] == [
        ("b", "cascade->server", "server b", True, 0.0004, 400, True)]


def test_an_escalation_that_attaches_the_draft_is_never_shared():
    answers = [Answer("server alone", "gsm8k", "b", text="server b"), Answer("shepherd", "gsm8k", "b", selected=["qwen-math"])]
    assert shared_handovers(TO_SHEPHERD, {("gsm8k", "b")}, answers) == []


@pytest.mark.parametrize("target", ["shepherd", "guide"])
def test_an_escalation_afresh_is_the_strategys_own_answer_and_bill(target):
    arm = Arm(f"cascade->{target}", "colm", {**TO_SHEPHERD.colm, "escalate_to": target, "draft_tokens": 0})
    answers = [
        Answer(target, "gsm8k", "b", text=f"{target} b", correct=True, cost_usd=0.0002, server_tokens=200),
        Answer(target, "gsm8k", "c", error="APIError: down"),  # sent through the app instead
        Answer("server alone", "gsm8k", "d", text="server d"),  # another arm's answer is not this one's
    ]
    shared = shared_handovers(arm, {("gsm8k", "b"), ("gsm8k", "c"), ("gsm8k", "d")}, answers)
    assert [(a.pid, a.arm, a.text, a.correct, a.cost_usd, a.server_tokens, a.escalated) for a in shared] == [
        ("b", arm.name, f"{target} b", True, 0.0002, 200, True)]


def test_the_benchmark_escalates_to_shepherd_and_guide_afresh():
    arms = {a.name: a for a in quality_arms("min", -1.0, "examples")}
    assert arms["cascade->shepherd"].colm["draft_tokens"] == arms["cascade->guide"].colm["draft_tokens"] == 0


def _row(arm: str, *, pgr: float, lower: float, ratio: float):
    from clients.eval.checkable.arms import ArmRow, Score

    score = Score(correct=1, n=2)
    return ArmRow(arm=arm, pooled=score, by_task={}, ci95=(0.1, 0.9), cost_per_answer=ratio, ratio=ratio, pgr=pgr,
                  pgr90=(lower, pgr + 0.3), escalation=None, errors=0)


def test_the_frontier_line_needs_the_pgr_the_cost_and_a_lower_end_above_the_random_mix():
    from benchmarks._quality_report import _frontier

    lines = _frontier([_row("a", pgr=0.6, lower=0.31, ratio=0.30),   # holds
                       _row("b", pgr=0.6, lower=0.29, ratio=0.30),   # interval reaches the random mix
                       _row("c", pgr=0.6, lower=0.50, ratio=0.36),   # too dear
                       _row("d", pgr=0.49, lower=0.40, ratio=0.20)])  # too little of the gap
    assert [line.split(":")[0] for line in lines] == ["a", "b", "c", "d"]
    assert [line.endswith("random mix holds") for line in lines] == [True, False, False, False]


def test_a_confident_draft_that_failed_its_check_does_not_stand():
    failed = replace(_draft("a", -0.01), check="failed")
    passed = replace(_draft("b", -0.01), check="passed")
    kept, unsure = shared_drafts(TO_SERVER, [failed, passed], FIT)
    assert [k.pid for k in kept] == ["b"] and unsure == {("gsm8k", "a")}


def test_the_fit_escalates_every_draft_that_failed_its_check_and_bounds_the_rest():
    from benchmarks._quality_report import FAILED_CHECK, SIGNALS, fit_cascade

    def draft(pid: str, score: float, check: str, *, correct: bool = True) -> dict:
        return asdict(Answer("client alone", "mbpp", pid, correct=correct, check=check,
                             confidence={s: score for s in SIGNALS}))

    # four confident wrong drafts caught by the check, one unsure wrong one, five confident right ones
    drafts = [draft(f"f{i}", -0.01, "failed", correct=False) for i in range(4)]
    drafts += [draft("u", -0.9, "none", correct=False)]
    drafts += [draft(f"r{i}", -0.05 - i / 100, "passed") for i in range(5)]
    fit = fit_cascade(drafts, alpha=0.1, check="examples")
    assert fit["checks_failed"] == 4 and fit["auroc"]["mean"] == 1.0  # the check ranks the confident wrong ones last
    assert FAILED_CHECK < -0.9 < fit["threshold"] == -0.09 and fit["let_through_calibration"] == 0.0
    unchecked = fit_cascade([{**d, "check": None} for d in drafts], alpha=0.1)
    assert unchecked["auroc"]["mean"] < 0.5 and unchecked["check"] == "none"


def test_a_replay_takes_the_strategys_answers_where_the_cascade_escalated_and_needs_all_of_them():
    from benchmarks.replay_escalations import replay

    drafts = [_draft("a", -0.1), _draft("b", -0.3, correct=False)]
    stored = [Answer(arm, "gsm8k", pid, text=f"{arm} {pid}", cost_usd=0.0001)
              for arm in ("shepherd", "guide") for pid in ("a", "b")]
    attached = Answer("cascade->guide", "gsm8k", "b", text="revised draft", escalated=True)
    results = {"fit": FIT, "arms": ["client alone", "cascade->guide"], "setup": "a run",
               "answers": [asdict(a) for a in drafts + stored + [attached]]}
    out = replay(results)
    rows = {(a["arm"], a["pid"]): (a["text"], a["escalated"], a["cost_usd"]) for a in out["answers"]}
    assert rows[("cascade->guide", "a")] == ("draft a", False, 0.0)
    assert rows[("cascade->guide", "b")] == ("guide b", True, 0.0001)  # the attached run's answer is gone
    assert rows[("cascade->shepherd", "b")] == ("shepherd b", True, 0.0001)
    assert out["arms"] == ["client alone", "cascade->guide", "cascade->shepherd"] and "replayed afresh" in out["setup"]
    results["answers"] = [asdict(a) for a in drafts + stored[:3]]  # guide's answer to b is missing
    with pytest.raises(SystemExit, match="cascade->guide: 1 escalations have no stored guide answer"):
        replay(results)
