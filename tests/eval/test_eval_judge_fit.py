"""The judge's output budget fits its context, and vLLM-like judges give verdicts the parsers read.

Against the fake server's judges (see fake_openai.py): `small-judge` is a small vLLM-like
model with a 1024-token context that rambles unless constrained; `openai-judge` enforces the
same context with OpenAI's 400 and lists none.
"""

from __future__ import annotations

import json
import logging
import re

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from clients.eval.cli import main
from clients.eval.context import ContextWindow, PromptTooLong, context_overflow
from clients.eval.formats import alpaca_eval, arena_hard, fastchat
from clients.eval.formats.jsonio import read_json
from clients.eval.layout import Layout
from clients.eval.verdicts import ALPACA_EVAL, ARENA_HARD, MT_BENCH_SINGLE
from colm_serve.stand_in.service import StandInService
from tests.eval.fake_openai import SMALL_CONTEXT
from tests.eval.test_eval_flow import generate, judge


def _bad_request(message: str) -> openai.BadRequestError:
    request = httpx.Request("POST", "http://x/v1/chat/completions")
    response = httpx.Response(400, request=request, json={"error": {"message": message}})
    return openai.BadRequestError(message, response=response, body={"message": message})


@pytest.mark.parametrize("message, limit, prompt", [
    ("max_tokens=2048 plus the prompt's 455 tokens exceeds the context of 2048 tokens", 2048, 455),
    ("'max_tokens' or 'max_completion_tokens' is too large: 2048. This model's maximum context length is 2048 "
     "tokens and your request has 455 input tokens (2048 > 2048 - 455).", 2048, 455),
    ("This model's maximum context length is 8192 tokens. However, you requested 9000 tokens (1000 in the "
     "messages, 8000 in the completion).", 8192, 1000),
    ("This model's maximum context length is 4096 tokens.", 4096, None),
])
def test_context_errors_are_read(message, limit, prompt):
    overflow = context_overflow(_bad_request(message))
    assert overflow is not None and (overflow.limit, overflow.prompt_tokens) == (limit, prompt)


@pytest.mark.parametrize("exc", [
    _bad_request("temperature must be at most 2"),
    openai.APIConnectionError(request=httpx.Request("POST", "http://x")),
])
def test_other_errors_are_not_context_errors(exc):
    assert context_overflow(exc) is None


def test_window_clamps_on_the_estimate_then_settles_on_the_server():
    window = ContextWindow(model="j", max_model_len=1000)
    messages = [{"role": "user", "content": "x" * 700}]  # ~200 tokens + 8
    assert window.fit(messages, 100) == 100 and window.clamped == 0
    assert 700 <= window.fit(messages, 5000) < 800 and window.clamped == 1
    overflow = context_overflow(_bad_request("max_tokens=792 plus the prompt's 300 tokens exceeds the context of "
                                             "1000 tokens"))
    assert window.settle(overflow, messages, 792) == 700 and window.clamped == 2
    with pytest.raises(PromptTooLong, match="no room"):
        window.fit([{"role": "user", "content": "x" * 5000}], 10)


def test_window_without_a_known_context_learns_it_from_the_400():
    window = ContextWindow(model="j")
    messages = [{"role": "user", "content": "hello"}]
    assert window.fit(messages, 4096) == 4096
    overflow = context_overflow(_bad_request("This model's maximum context length is 1024 tokens."))
    assert window.settle(overflow, messages, 4096) < 1024
    assert window.max_model_len == 1024 and window.fit(messages, 4096) < 1024


@pytest.mark.parametrize("fmt, budget, good, bad", [
    (MT_BENCH_SINGLE, 64, ["[[7]]", "Fine answer.\nRating: [[10]]"], ["[[11]]", "[[0]]", "Rating: [7]", "[[7]] more"]),
    (ARENA_HARD, 64, ["My verdict: [[A>>B]]", "[[A=B]]"], ["[[A>>>B]]", "[[A]] [[B>A]]"]),
    (ALPACA_EVAL, 16, ["m", "M"], ["mM", "M.", " m"]),
])
def test_verdict_regexes(fmt, budget, good, bad):
    pattern = re.compile(fmt.regex(budget))
    assert all(pattern.fullmatch(t) for t in good)
    assert not any(pattern.fullmatch(t) for t in bad)
    assert fmt.extra_body(budget) == {"structured_outputs": {"regex": fmt.regex(budget)}}


def test_verdict_reasoning_is_bounded_by_the_budget():
    """Every token is at least a character: reasoning of budget-12 characters leaves room for the verdict."""
    pattern = re.compile(MT_BENCH_SINGLE.regex(40))
    assert pattern.fullmatch("a" * 28 + "[[5]]") and not pattern.fullmatch("a" * 29 + "[[5]]")
    assert fastchat.parse_rating("x" * 28 + "[[5]]") == 5
    # Larger bounds round down, so nearby clamped budgets share one compiled grammar.
    assert MT_BENCH_SINGLE.regex(1593) == MT_BENCH_SINGLE.regex(1600) != MT_BENCH_SINGLE.regex(1700)
    assert re.compile(MT_BENCH_SINGLE.regex(1593)).fullmatch("a" * (1593 - 12 - 61) + "[[5]]")


def test_stand_in_lists_its_context_like_vllm():
    service = StandInService({"served_models": ["smollm2-local"], "engine": {"max_model_len": 2048}},
                             engine=None, client=object())
    cards = TestClient(service.__serve_build_asgi_app__()).get("/v1/models").json()["data"]
    assert cards == [{"id": "smollm2-local", "object": "model", "created": 0, "owned_by": "local",
                      "max_model_len": 2048}]


def test_small_vllm_judge_with_default_budget_is_clamped_and_constrained(fake, tmp_path, capsys, caplog):
    """The newcomer's command: default --judge-max-tokens 2048 on a 1024-token judge that rambles."""
    assert generate(fake, tmp_path, "mt-bench", "colm-client", "--limit", "2") == 0
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="clients.eval"):
        assert judge(fake, tmp_path, "mt-bench", "--limit", "2", judge_model="small-judge") == 0
    out = capsys.readouterr().out
    assert "verdicts constrained" in out and "0 without a readable verdict" in out and "4 with the output budget" in out
    clamps = [r for r in caplog.records if "does not fit" in r.getMessage()]  # one line; the rest at debug
    assert len(clamps) == 1 and clamps[0].levelno == logging.WARNING
    assert "context 1024 from /v1/models" in clamps[0].getMessage()

    requests = fake.state.of("small-judge")
    assert len(requests) == 4  # clamped before sending: no 400 was needed
    for body in requests:
        prompt = sum(len(m["content"].split()) for m in body["messages"])
        assert prompt + body["max_tokens"] <= SMALL_CONTEXT < prompt + 2048
        assert body["structured_outputs"]["regex"] == MT_BENCH_SINGLE.regex(body["max_tokens"])
    judgments = fastchat.validate_judgments(Layout(tmp_path, "mt-bench").judgment_file("x", "small-judge"))
    assert {j["score"] for j in judgments} == {7} and {j["parse_error"] for j in judgments} == {None}
    card = read_json(Layout(tmp_path, "mt-bench").judge_card("small-judge"))
    assert card["structured"] is True and card["max_model_len"] == SMALL_CONTEXT and card["owned_by"] == "local"


def test_structured_off_leaves_unparsed_judgments_counted(fake, tmp_path, capsys):
    assert generate(fake, tmp_path, "mt-bench", "colm-client", "--limit", "1") == 0
    assert judge(fake, tmp_path, "mt-bench", "--limit", "1", "--judge-structured", "off",
                 judge_model="small-judge") == 0
    assert all("structured_outputs" not in b for b in fake.state.of("small-judge"))
    judgments = fastchat.validate_judgments(Layout(tmp_path, "mt-bench").judgment_file("x", "small-judge"))
    assert [j["score"] for j in judgments] == [-1, -1]
    assert all(j["parse_error"].startswith("no [[rating]] in the judgment") for j in judgments)
    capsys.readouterr()
    assert main(["table", "--out-dir", str(tmp_path), "--bench", "mt-bench"]) == 0
    out = capsys.readouterr().out
    assert "unparsed: judgments without a readable verdict" in out
    assert "small-judge (offline)" in out and "say nothing about real answer quality" in out


def test_real_judge_gets_no_constraint_and_settles_on_the_servers_400(fake, tmp_path, caplog):
    assert generate(fake, tmp_path, "mt-bench", "colm-client", "--limit", "2") == 0
    with caplog.at_level(logging.INFO, logger="clients.eval"):
        assert judge(fake, tmp_path, "mt-bench", "--limit", "2", "--concurrency", "1",
                     judge_model="openai-judge") == 0
    requests = fake.state.of("openai-judge")
    assert all("structured_outputs" not in b for b in requests)
    assert requests[0]["max_tokens"] == 2048 and requests[1]["max_tokens"] < SMALL_CONTEXT  # the 400, then the room
    assert len(requests) in (5, 6)  # later judgments clamp before sending (the estimate may miss once more)
    assert "from the server's 400" in next(r.getMessage() for r in caplog.records if "does not fit" in r.getMessage())
    judgments = fastchat.validate_judgments(Layout(tmp_path, "mt-bench").judgment_file("x", "openai-judge"))
    assert len(judgments) == 4 and {j["score"] for j in judgments} == {8}
    card = read_json(Layout(tmp_path, "mt-bench").judge_card("openai-judge"))
    assert card["structured"] is False and card["max_model_len"] is None


def test_structured_on_without_models_route(fake, tmp_path, caplog):
    """A server that lists no models: --judge-structured on still constrains, and the probe's failure is said."""
    plain = fake.url.replace("/v1", "/plain/v1")
    assert generate(fake, tmp_path, "mt-bench", "colm-client", "--limit", "1") == 0
    with caplog.at_level(logging.INFO, logger="clients.eval"):
        assert main(["judge", "--bench", "mt-bench", "--judge-base-url", plain, "--judge-model", "bad-judge",
                     "--judge-structured", "on", "--limit", "1", "--out-dir", str(tmp_path)]) == 0
    assert any("GET /v1/models failed" in r.getMessage() for r in caplog.records)
    assert all("structured_outputs" in b for b in fake.state.of("bad-judge"))
    judgments = fastchat.validate_judgments(Layout(tmp_path, "mt-bench").judgment_file("x", "bad-judge"))
    assert {j["score"] for j in judgments} == {7}


def test_small_judge_on_pairwise_benches(fake, tmp_path):
    for model in ("server/weak", "strong"):
        assert generate(fake, tmp_path, "arena-hard", model, "--limit", "2") == 0
    assert judge(fake, tmp_path, "arena-hard", "--baseline", "server__weak", judge_model="small-judge") == 0
    records = arena_hard.validate_judgments(Layout(tmp_path, "arena-hard").judgment_file("strong", "small-judge"))
    assert all(g["score"] == "B>A" and g["parse_error"] is None for r in records for g in r["games"])
    assert fake.state.count("small-judge") == 4  # a verdict the first time: no follow-up turn

    instructions = tmp_path / "alpaca.json"
    instructions.write_text(json.dumps([{"instruction": f"Say {i}."} for i in range(2)]))
    for model in ("server/weak", "strong"):
        assert generate(fake, tmp_path, "alpaca-eval", model, "--questions", str(instructions)) == 0
    assert judge(fake, tmp_path, "alpaca-eval", "--baseline", "server__weak", judge_model="small-judge") == 0
    layout = Layout(tmp_path, "alpaca-eval")
    annotations = alpaca_eval.validate_annotations(layout.judgment_file("strong", "small-judge"))
    assert [a["preference"] for a in annotations] == [1.5, 1.5]  # "M" in both orders: the position bias cancels
    regexes = {b["structured_outputs"]["regex"] for b in fake.state.of("small-judge")[4:]}
    assert regexes == {ALPACA_EVAL.regex(16)}
