"""The real app: Ray Serve, the vLLM client model, the embedded upstream over real HTTP.

Every test talks to it the way users do: the official openai SDK, LangChain, raw HTTP.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from tests.api.test_routes import BAD_INPUT

pytestmark = pytest.mark.serve

FAST = {"iterations": 0, "top_k": 2}


@pytest.fixture
def client(app_url):
    return openai.OpenAI(base_url=f"{app_url}/v1", api_key="sk-local-test", max_retries=0, timeout=600)


@pytest.fixture
def aclient(app_url):
    return openai.AsyncOpenAI(base_url=f"{app_url}/v1", api_key="sk-local-test", max_retries=0, timeout=600)


def test_models_lists_colm_client_and_servers(client):
    ids = [m.id for m in client.models.list()]
    assert ids[:2] == ["colm", "colm-client"]
    assert {"server/qwen-math", "server/gpt-conv", "server/qwen-coder", "server/ds-creative"} <= set(ids)


def test_client_model_alone_answers(client):
    resp = client.chat.completions.create(
        model="colm-client", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=24,
        temperature=0,
    )
    assert resp.choices[0].message.content.strip()
    assert resp.usage.completion_tokens > 0 and resp.usage.prompt_tokens > 0
    assert resp.model_extra["colm"]["usage"]["client_tokens"] == resp.usage.total_tokens


def test_colm_collaboration_with_trace(client):
    resp = client.chat.completions.create(
        model="colm",
        messages=[{"role": "user", "content": "How do I reverse a list in Python?"}],
        max_tokens=48,
        extra_body={"colm": {"trace": True, "iterations": 1}},
    )
    colm = resp.model_extra["colm"]
    assert resp.choices[0].message.content.strip()
    assert len(colm["selected"]) == 2 and colm["rounds"]
    assert colm["usage"]["server_tokens"] > 0 and colm["usage"]["client_tokens"] > 0
    assert any(g["text"] for g in colm["rounds"][0]["guidance"])
    assert colm["rounds"][-1]["stop_reason"]
    assert {"selection", "guidance", "client", "total"} <= set(colm["latency_s"])


def test_colm_streams_with_the_sdk(client):
    stream = client.chat.completions.create(
        model="colm",
        messages=[{"role": "user", "content": "Name three primary colours."}],
        max_tokens=32,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"colm": {**FAST, "trace": True}},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    last = chunks[-1]
    assert last.usage.total_tokens > 0 and last.model_extra["colm"]["selected"]


def test_two_turn_conversation(client):
    messages = [{"role": "user", "content": "Give me a fruit name."}]
    first = client.chat.completions.create(model="colm", messages=messages, max_tokens=24, extra_body={"colm": FAST})
    messages += [{"role": "assistant", "content": first.choices[0].message.content},
                 {"role": "user", "content": "Now describe its colour in one sentence."}]
    second = client.chat.completions.create(model="colm", messages=messages, max_tokens=32, extra_body={"colm": FAST})
    assert first.choices[0].message.content.strip() and second.choices[0].message.content.strip()


def test_server_passthrough_baseline(client):
    resp = client.chat.completions.create(
        model="server/gpt-conv", messages=[{"role": "user", "content": "Say hello."}], max_tokens=16, temperature=0
    )
    assert resp.choices[0].message.content.strip()
    assert resp.model_extra["colm"]["usage"]["server_tokens"] == resp.usage.total_tokens > 0
    assert resp.model_extra["colm"]["usage"]["cost_usd"] > 0


def test_langchain_chat_openai(app_url):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{app_url}/v1", api_key="sk-local-test", model="colm", max_tokens=24,
                     extra_body={"colm": FAST}, max_retries=0, timeout=600)
    assert llm.invoke("What is 2 + 2?").content.strip()


@pytest.mark.parametrize(("body", "status", "etype", "param"), [b for b in BAD_INPUT if b[1] != 413])
def test_bad_input_table_against_the_real_app(app_url, body, status, etype, param):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = httpx.post(f"{app_url}/v1/chat/completions", content=content, headers={"content-type": "application/json"}, timeout=60)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["type"] == etype and (param is None or err["param"] == param)


def test_oversized_and_overlong_requests(app_url, client):
    huge = {"model": "colm", "messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]}
    resp = httpx.post(f"{app_url}/v1/chat/completions", json=huge, timeout=60)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "body_too_large"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="colm-client", messages=[{"role": "user", "content": "word " * 3000}])
    assert "tokens" in err.value.message and "context" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="colm-client", messages=[{"role": "user", "content": "hi"}], max_tokens=100000)
    assert err.value.body["param"] == "max_tokens"
    ok = client.chat.completions.create(model="colm-client", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert ok.choices[0].message.content is not None


async def test_identical_concurrent_requests_share_upstream_calls(app_url, aclient):
    """8 identical deterministic colm requests cost no more upstream calls than one."""
    async def stats():
        async with httpx.AsyncClient() as http:
            return (await http.get(f"{app_url}/v1/colm/stats", timeout=60)).json()["totals"]

    body = dict(model="colm", messages=[{"role": "user", "content": "Explain recursion in one line (coalescing probe)."}],
                max_tokens=24, temperature=0, seed=7, extra_body={"colm": {**FAST, "selector": "embedding"}})
    before = await stats()
    one = await aclient.chat.completions.create(**{**body, "extra_body": {"colm": {**FAST, "selector": "embedding", "cache": False}}})
    after_one = await stats()
    single_cost = after_one["upstream_calls"] - before["upstream_calls"]
    body["messages"] = [{"role": "user", "content": "Explain iteration in one line (coalescing probe)."}]
    answers = await asyncio.gather(*(aclient.chat.completions.create(**body) for _ in range(8)))
    after_eight = await stats()
    assert one.choices[0].message.content is not None and all(a.choices[0].message.content for a in answers)
    assert single_cost >= 2
    assert after_eight["upstream_calls"] - after_one["upstream_calls"] <= single_cost
    assert after_eight["coalesced"] + after_eight["cache_hits"] > after_one["coalesced"] + after_one["cache_hits"]
