"""The strategies, the stream and the ledger where users meet them: the real app, real HTTP,
the official openai SDK and LangChain. What happened upstream is read from /v1/colm/stats
(the server proxies' counters), not from the trace alone."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

pytestmark = pytest.mark.serve

QUESTION = [{"role": "user", "content": "How do I reverse a list in Python?"}]


@pytest.fixture
def client(app_url):
    return openai.OpenAI(base_url=f"{app_url}/v1", api_key="sk-collab-test", max_retries=0, timeout=600)


def totals(app_url: str) -> dict:
    return httpx.get(f"{app_url}/v1/colm/stats", timeout=60).json()["totals"]


def test_the_strategies_are_listed_with_where_each_step_runs(app_url):
    listed = httpx.get(f"{app_url}/v1/colm/strategies", timeout=30).json()
    by_name = {s["name"]: s for s in listed["strategies"]}
    assert {"guide", "shepherd", "cascade"} <= set(by_name) and listed["default"] in by_name
    for strategy in by_name.values():
        assert strategy["server_token_bound"] and {step["runs_on"] for step in strategy["steps"]} <= {"server", "client", "router"}


def test_shepherd_continues_the_servers_own_opening(app_url, client):
    before = totals(app_url)
    resp = client.chat.completions.create(
        model="colm", messages=QUESTION, max_tokens=64,
        extra_body={"colm": {"strategy": "shepherd", "prefix_tokens": 16, "cache": False, "trace": True}})
    after = totals(app_url)
    colm, answer = resp.model_extra["colm"], resp.choices[0].message.content
    prefix = colm["rounds"][0]["prefix"]
    assert after["upstream_calls"] - before["upstream_calls"] == 1  # one server call: the opening
    assert prefix and answer.startswith(prefix) and len(answer) > len(prefix)  # continued, not rewritten
    assert 0 < colm["usage"]["server_completion_tokens"] <= 16 and colm["usage"]["client_completion_tokens"] > 0
    assert ("continue", "client") in {(d["step"], d["choice"]) for d in colm["decisions"]}


def test_a_confident_cascade_answer_calls_no_server(app_url, client):
    before = totals(app_url)
    resp = client.chat.completions.create(
        model="colm", messages=QUESTION, max_tokens=48,
        extra_body={"colm": {"strategy": "cascade", "threshold": -20, "cache": False, "trace": True}})
    after = totals(app_url)
    assert resp.choices[0].message.content.strip()
    assert after["upstream_calls"] == before["upstream_calls"] and after["server_tokens"] == before["server_tokens"]
    usage = resp.model_extra["colm"]["usage"]
    assert usage["server_tokens"] == 0 and usage["cost_usd"] == 0 and usage["saving_usd"] > 0
    assert resp.model_extra["colm"]["decisions"][0]["choice"] == "no"


def test_an_unsure_cascade_answer_escalates_and_pays(app_url, client):
    before = totals(app_url)
    resp = client.chat.completions.create(
        model="colm", messages=QUESTION, max_tokens=48,
        extra_body={"colm": {"strategy": "cascade", "threshold": -0.0001, "prefix_tokens": 8, "cache": False, "trace": True}})
    after = totals(app_url)
    assert after["upstream_calls"] - before["upstream_calls"] == 1
    assert resp.model_extra["colm"]["decisions"][0]["choice"] == "shepherd"


CODE_QUESTION = [{"role": "user", "content": (
    "Write a Python function that adds two numbers. Reply with a single ```python fenced code block.\n"
    "```\nassert add(2, 3) == 5\n```")}]


def test_a_cascade_draft_that_fails_the_questions_example_escalates_whatever_its_score(app_url, client):
    before = totals(app_url)
    resp = client.chat.completions.create(
        model="colm", messages=CODE_QUESTION, max_tokens=96,
        extra_body={"colm": {"strategy": "cascade", "threshold": -20, "check": "examples", "prefix_tokens": 8,
                             "cache": False, "trace": True}})
    after = totals(app_url)
    colm = resp.model_extra["colm"]
    check, decision = colm["check"], colm["decisions"][0]
    assert check["name"] == "examples" and check["examples"] == 1 and check["outcome"] in ("passed", "failed")
    failed = check["outcome"] == "failed"  # SmolLM2 decides which; either way the decision must follow it
    assert decision["choice"] == ("shepherd" if failed else "no") and f"examples check {check['outcome']}" in decision["why"]
    assert after["upstream_calls"] - before["upstream_calls"] == (1 if failed else 0)
    assert colm["latency_s"]["check"] > 0


def _first_events(app_url: str, body: dict) -> dict:
    """When the first byte, the first reasoning_content and the first content arrived."""
    seen: dict = {}
    t0 = time.perf_counter()
    with httpx.stream("POST", f"{app_url}/v1/chat/completions", json=body, timeout=600) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            now = time.perf_counter() - t0
            seen.setdefault("byte", now)
            if '"reasoning_content"' in line:
                seen.setdefault("reasoning", now)
            if '"content"' in line and '"role"' not in line and '"reasoning_content"' not in line:
                seen.setdefault("content", now)
            if '"latency_s"' in line:
                seen["trace"] = line
    return seen


def test_a_streamed_colm_answer_starts_at_once_and_shows_its_work_before_the_guidance_is_done(app_url):
    import json

    baseline = _first_events(app_url, {"model": "colm-client", "messages": QUESTION, "max_tokens": 16, "stream": True})
    seen = _first_events(app_url, {"model": "colm", "messages": QUESTION, "max_tokens": 48, "stream": True,
                                   "colm": {"strategy": "guide", "iterations": 0, "cache": False, "trace": True}})
    trace = json.loads(seen["trace"].removeprefix("data: "))["colm"]
    guidance_done = trace["latency_s"]["selection"] + trace["latency_s"]["guidance"]
    # the first byte within 1 s, or (on a loaded host) no later than twice colm-client's first token
    assert seen["byte"] < max(1.0, 2 * baseline["content"]), (seen, baseline)
    assert seen["reasoning"] < guidance_done < seen["content"], (seen, guidance_done)


def test_the_sdk_reads_progress_as_reasoning_content_and_the_answer_as_content(client):
    stream = client.chat.completions.create(
        model="colm", messages=QUESTION, max_tokens=32, stream=True,
        extra_body={"colm": {"strategy": "guide", "iterations": 0}})
    reasoning, content = [], []
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            if (delta.model_extra or {}).get("reasoning_content"):
                reasoning.append(delta.model_extra["reasoning_content"])
            if delta.content:
                content.append(delta.content)
    assert reasoning and "".join(content).strip()
    assert not any("Strategy guide" in piece for piece in content)  # progress never leaks into the answer


def test_a_langchain_stream_yields_the_answer(app_url):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{app_url}/v1", api_key="sk-collab-test", model="colm", max_tokens=24,
                     extra_body={"colm": {"strategy": "shepherd", "prefix_tokens": 8}}, max_retries=0, timeout=600)
    pieces = [chunk.content for chunk in llm.stream("What is 2 + 2?")]
    assert "".join(p for p in pieces if isinstance(p, str)).strip()
