"""Parsers and validators of the three benchmarks' formats, including what they must reject."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from clients.eval.client import is_transient, retry_delay
from clients.eval.config import RetryPolicy
from clients.eval.formats import alpaca_eval, arena_hard, fastchat
from clients.eval.formats.jsonio import FormatError
from clients.eval.judging.alpaca_eval import preference
from clients.eval.layout import safe_name
from clients.eval.questions import data_file, load_questions


@pytest.mark.parametrize("text, score", [
    ("Rating: [[8]]", 8), ("[[7.5]]", 7.5), ("score [6] only", 6), ("[[10]] then [[2]]", 10),
    ("no rating at all", -1), ("[[eight]]", -1), ("", -1),
])
def test_fastchat_rating_parse(text, score):
    assert fastchat.parse_rating(text) == score


@pytest.mark.parametrize("text, expected", [
    ("verdict: [[A>>B]]", ("A>>B", False)), ("[[B>A]] and again [[B>A]]", ("B>A", False)),
    ("nothing", (None, True)), ("[[A>B]] no, [[B>A]]", (None, False)),
])
def test_arena_hard_get_score(text, expected):
    assert arena_hard.get_score(text) == expected


@pytest.mark.parametrize("scores, battles, failed", [
    (["B>>A", "A>>B"], ["win"] * 6, 0),        # model strongly better in both orders
    (["A>B", "B>A"], ["loss", "loss"], 0),     # baseline better in both orders
    (["A=B", "A=B"], ["tie", "tie"], 0),
    (["B>A", None], ["win"], 1),               # a game without a label adds no battle
    (["A<B", "AB"], [], 2),                    # labels show_result does not score
])
def test_arena_hard_outcomes(scores, battles, failed):
    record = {"games": [{"score": s} for s in scores]}
    assert arena_hard.outcomes(record) == (battles, failed)


def test_markdown_counts_skip_code():
    text = "# Title\n## Sub\n1. one\n- two\n* three\n**bold** and __u__\n```\n# not a header\n- nor a list\n```"
    counts = arena_hard.markdown_counts(text)
    assert counts["header_count"]["h1"] == 1 and counts["header_count"]["h2"] == 1
    assert counts["list_count"] == {"ordered": 1, "unordered": 2}
    assert counts["bold_count"] == {"**": 1, "__": 1}


@pytest.mark.parametrize("text, choice", [("m", "m"), (" M\n", "M"), ('"M".', "M"), ("Model M", None), ("", None)])
def test_alpaca_parse_choice(text, choice):
    assert alpaca_eval.parse_choice(text) == choice


@pytest.mark.parametrize("first, second, pref", [
    ("M", "m", 2.0), ("m", "M", 1.0), ("m", "m", 1.5), (None, "m", 2.0), (None, None, None),
])
def test_alpaca_preference_both_orders(first, second, pref):
    assert preference(first, second) == pref


def test_alpaca_winrate_matches_alpaca_eval_definition():
    summary = alpaca_eval.winrate([2.0, 1.0, 1.5, None, 2.0])
    assert summary["win_rate"] == pytest.approx(62.5)
    assert (summary["n_wins"], summary["n_wins_base"], summary["n_draws"], summary["n_total"]) == (2, 1, 1, 4)


@pytest.mark.parametrize("model_id, name", [
    ("colm", "colm"), ("server/gpt-conv", "server__gpt-conv"), ("org/model:v1", "org__model_v1"),
])
def test_safe_name(model_id, name):
    assert safe_name(model_id) == name and safe_name(name) == name


def _write_lines(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


GOOD_FASTCHAT = fastchat.answer_record(question_id=81, name="m", turns=["a", "b"])


@pytest.mark.parametrize("change, message", [
    ({"question_id": "81"}, "question_id"), ({"choices": []}, "choices is empty"),
    ({"choices": [{"index": 0, "turns": ["a", 2]}]}, "strings"), ({"model_id": None}, "model_id"),
])
def test_fastchat_answers_rejected(tmp_path, change, message):
    path = _write_lines(tmp_path / "m.jsonl", [{**GOOD_FASTCHAT, **change}])
    with pytest.raises(FormatError, match=message):
        fastchat.validate_answers(path)


def test_fastchat_answers_turn_count(tmp_path):
    path = _write_lines(tmp_path / "m.jsonl", [GOOD_FASTCHAT])
    assert list(fastchat.validate_answers(path, turns=2)) == [81]
    with pytest.raises(FormatError, match="2 turns"):
        fastchat.validate_answers(path, turns=1)


@pytest.mark.parametrize("score", [11, "8", None])
def test_fastchat_judgments_rejected(tmp_path, score):
    rec = fastchat.judgment_record(question_id=81, model="m", judge=("j", "single-v1"), user_prompt="p",
                                   judgment="x", score=8, turn=1)
    path = _write_lines(tmp_path / "j.jsonl", [{**rec, "score": score}])
    with pytest.raises(FormatError):
        fastchat.validate_judgments(path)


def test_arena_hard_answers_rejected_without_metadata(tmp_path):
    rec = arena_hard.answer_record(question_id="q1", name="m", turns=[("text", 3)])
    assert arena_hard.validate_answers(_write_lines(tmp_path / "ok.jsonl", [rec]))["q1"]["model_id"] == "m"
    del rec["conv_metadata"]
    with pytest.raises(FormatError, match="conv_metadata"):
        arena_hard.validate_answers(_write_lines(tmp_path / "bad.jsonl", [rec]))


@pytest.mark.parametrize("records, message", [
    ({"instruction": "a"}, "JSON list"),
    ([{"instruction": "a", "output": "x"}], "generator"),
    ([{"instruction": "a", "output": "x", "generator": "g"}, {"instruction": "a", "output": "y", "generator": "g"}],
     "duplicate"),
    ([{"instruction": "a", "output": "x", "generator": "g"}, {"instruction": "b", "output": "y", "generator": "h"}],
     "several generators"),
])
def test_alpaca_outputs_rejected(tmp_path, records, message):
    path = tmp_path / "model_outputs.json"
    path.write_text(json.dumps(records))
    with pytest.raises(FormatError, match=message):
        alpaca_eval.validate_outputs(path)


def test_packaged_question_files():
    mt = load_questions("mt-bench")
    assert len(mt) == 80 and all(len(q.turns) == 2 for q in mt)
    arena = load_questions("arena-hard")
    assert len(arena) == 500 and all(isinstance(q.question_id, str) for q in arena)
    notice = data_file("README.md").read_text()
    assert "Apache" in notice and data_file("LICENSE-Apache-2.0.txt").exists()
    with pytest.raises(ValueError, match="--questions"):
        load_questions("alpaca-eval")


def _status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request)
    return openai.APIStatusError("error", response=response, body=None)


@pytest.mark.parametrize("status, transient", [(400, False), (401, False), (404, False), (408, True), (429, True),
                                               (500, True), (502, True), (503, True), (504, True)])
def test_transient_statuses(status, transient):
    assert is_transient(_status_error(status)) is transient


def test_retry_delay_honours_retry_after_then_backs_off():
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=3, max_retry_after_s=10)
    assert retry_delay(_status_error(429, {"Retry-After": "4"}), 1, policy) == 4
    assert retry_delay(_status_error(429, {"Retry-After": "999"}), 1, policy) == 10
    assert [retry_delay(_status_error(503), n, policy) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3]


def test_alpaca_eval_outputs_follow_the_instructions_order_not_completion_order(tmp_path: Path) -> None:
    from clients.eval.client import Reply
    from clients.eval.layout import Layout
    from clients.eval.questions import Question
    from clients.eval.stores import AlpacaEvalStore
    from clients.eval.usage import AnswerUsage

    questions = [Question(question_id=f"Write about topic {i}.", turns=[f"Write about topic {i}."]) for i in range(4)]
    store = AlpacaEvalStore(Layout(tmp_path, "alpaca-eval"), "m")
    for question in reversed(questions):  # concurrent answers land in whatever order they finish
        reply = Reply(text=f"answer to {question.question_id}")
        store.add(question, [reply], AnswerUsage.from_replies([reply], question_id=question.question_id, name="m",
                                                               model="m", base_url="http://x"))
    store.finish(questions)
    outputs = alpaca_eval.validate_outputs(store.path)
    assert list(outputs) == [q.question_id for q in questions]
    assert outputs[questions[0].question_id]["output"] == "answer to Write about topic 0."
