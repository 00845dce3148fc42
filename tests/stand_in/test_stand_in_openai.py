"""The embedded stand-in as an OpenAI server: what only it does (vLLM's `structured_outputs`,
the usage chunk only when asked, its model list), and the router's `server/<name>` pass-through
reaching it over real HTTP with tools, n and logprobs intact. The shapes it shares with
`colm-client` are in tests/client_model/test_openai_shapes.py."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from colm_serve.accounting.ledger import Ledger
from colm_serve.accounting.stores import MemoryStore
from colm_serve.api.routes import create_api
from colm_serve.collab.selection import AllSelector
from colm_serve.server_proxy.proxy import ServerProxy
from colm_serve.service import RouterService
from colm_serve.stand_in.service import StandInService
from tests.fakes import FakeClient, app_args
from tests.reliability.conftest import ProxyUpstreams, ServedApp

MODELS = ["m-math", "m-conv", "m-code", "m-eye"]
ASK = [{"role": "user", "content": "Weather in Paris?"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture
def engine() -> FakeClient:
    return FakeClient()


@pytest.fixture
def stand_in(engine):
    service = StandInService({"served_models": MODELS, "default_max_tokens": 64}, engine=None, client=engine)
    with ServedApp(service.__serve_build_asgi_app__()) as served:
        yield served


@pytest.fixture
def sdk(stand_in):
    with openai.OpenAI(base_url=stand_in.url + "/v1", api_key="x", max_retries=0, timeout=30) as client:
        yield client


def test_structured_outputs_is_vllms_extension(sdk, engine):
    engine.answers = ["yes"]
    resp = sdk.chat.completions.create(model="m-math", messages=ASK, extra_body={"structured_outputs": {"choice": ["yes", "no"]}})
    assert resp.choices[0].message.content == "yes"
    assert engine.requests[0].structured == {"choice": ["yes", "no"]} and engine.requests[0].max_tokens == 64


def test_tools_with_a_regex_constraint_are_a_400(sdk):
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="m-math", messages=ASK, tools=[WEATHER],
                                    extra_body={"structured_outputs": {"regex": "[a-z]+"}})
    assert err.value.body["param"] == "structured_outputs"


def test_the_usage_chunk_goes_out_only_when_asked(sdk, engine):
    engine.answers = ["a b", "a b"]
    plain = list(sdk.chat.completions.create(model="m-math", messages=ASK, stream=True))
    assert all(c.choices for c in plain) and all(c.usage is None for c in plain)
    asked = list(sdk.chat.completions.create(model="m-math", messages=ASK, stream=True,
                                             stream_options={"include_usage": True}))
    assert asked[-1].choices == [] and asked[-1].usage.total_tokens == 52
    assert len({c.id for c in asked}) == 1


def test_an_unknown_model_is_a_404_that_lists_the_served_ones(sdk):
    with pytest.raises(openai.NotFoundError) as err:
        sdk.chat.completions.create(model="gpt-17", messages=ASK)
    assert "m-math" in str(err.value)


def test_the_raw_body_is_openais_shape(stand_in, engine):
    engine.answers = [json.dumps({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]})]
    body = httpx.post(stand_in.url + "/v1/chat/completions", json={
        "model": "m-math", "messages": ASK, "tools": [WEATHER], "tool_choice": "required"}).json()
    assert body["object"] == "chat.completion" and body["model"] == "m-math" and body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert body["usage"] == {"prompt_tokens": 50, "completion_tokens": 6, "total_tokens": 56}  # the fake's words


@pytest.fixture
def router(stand_in):
    """The router whose servers are the stand-in, reached over HTTP by the real ServerProxy."""
    args = app_args(servers=[{"name": "a", "base_url": stand_in.url + "/v1", "timeout_s": 10},
                             {"name": "b", "base_url": stand_in.url + "/v1", "timeout_s": 10}])
    ups = ProxyUpstreams({s.name: ServerProxy(s) for s in args.servers})
    service = RouterService(args, ledger=Ledger(args.budgets, MemoryStore()), upstreams=ups,
                            client=FakeClient(), selectors={"all": AllSelector(), "llm": AllSelector()})
    with ServedApp(create_api(service)) as served:
        with openai.OpenAI(base_url=served.url + "/v1", api_key="x", max_retries=0, timeout=30) as client:
            yield client


def test_the_pass_through_gets_the_stand_ins_tool_calls(router, engine):
    engine.answers = [json.dumps({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]})] * 2
    resp = router.chat.completions.create(model="server/math", messages=ASK, tools=[WEATHER], tool_choice="required")
    (call,) = resp.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert resp.choices[0].finish_reason == "tool_calls"
    chunks = list(router.chat.completions.create(model="server/math", messages=ASK, tools=[WEATHER],
                                                 tool_choice="required", stream=True))
    arguments = "".join(d.function.arguments or "" for c in chunks for ch in c.choices for d in ch.delta.tool_calls or ())
    assert json.loads(arguments) == {"city": "Paris"}
    assert engine.requests[0].messages[0]["role"] == "system"  # the stand-in listed the tools to its model


def test_the_pass_through_gets_n_choices_and_logprobs(router, engine):
    engine.answers = ["one", "two"]
    resp = router.chat.completions.create(model="server/math", messages=ASK, n=2, temperature=1.0,
                                          logprobs=True, top_logprobs=1)
    assert [c.message.content for c in resp.choices] == ["one", "two"]
    assert [c.logprobs.content[0].token for c in resp.choices] == ["one", "two"]
