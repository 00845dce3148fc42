"""What `colm` does with what client apps send: tools, response_format, logprobs, and the
servers' prompt cache keys. Through the router's HTTP front door with the openai SDK, over real
ServerProxies and a real HTTP upstream (the sim); the client model is a fake that honours
structured outputs and reports logprobs as vLLM does."""

from __future__ import annotations

import json

import openai
import pytest

from colm_serve.accounting.ledger import Ledger
from colm_serve.accounting.stores import MemoryStore
from colm_serve.api.routes import create_api
from colm_serve.collab.selection import AllSelector
from colm_serve.server_proxy.proxy import ServerProxy
from colm_serve.service import RouterService
from tests.fakes import FakeClient, app_args
from tests.reliability.conftest import ProxyUpstreams, ServedApp
from tests.upstream_sim import UpstreamSim

TOOL = {"type": "function", "function": {"name": "lookup", "description": "Look a word up.",
                                         "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                                                        "required": ["query"]}}}
ASK = [{"role": "user", "content": "What does 'apple' mean?"}]
GUIDE = {"colm": {"strategy": "guide", "selector": "all", "top_k": 2, "iterations": 0, "trace": True}}
SCHEMA = {"type": "object", "properties": {"word": {"type": "string"}, "meaning": {"type": "string"}},
          "required": ["word", "meaning"], "additionalProperties": False}


@pytest.fixture(scope="module")
def sim():
    with UpstreamSim(models=["m-math", "m-conv", "m-code", "m-eye"]) as server:
        yield server


@pytest.fixture(scope="module")
def fake():
    return FakeClient()


@pytest.fixture(scope="module")
def router(sim, fake):
    args = app_args(servers=[{"name": "a", "base_url": sim.url, "timeout_s": 5}, {"name": "b", "base_url": sim.url}],
                    collaboration={"tool_calls": {"cascade": "client"}}, selection={"strategy": "all"})
    ups = ProxyUpstreams({s.name: ServerProxy(s) for s in args.servers})
    service = RouterService(args, ledger=Ledger(args.budgets, MemoryStore()), upstreams=ups, client=fake,
                            selectors={"all": AllSelector()})
    with ServedApp(create_api(service)) as served:
        yield openai.OpenAI(base_url=served.url + "/v1", api_key="x", max_retries=0, timeout=30)


def test_a_turn_that_may_call_a_tool_goes_to_the_best_specialists_server(router, sim):
    sim.reset()
    resp = router.chat.completions.create(model="colm", messages=ASK, tools=[TOOL], extra_body=GUIDE)
    call = resp.choices[0].message.tool_calls[0]
    assert resp.choices[0].finish_reason == "tool_calls" and call.function.name == "lookup"
    assert json.loads(call.function.arguments)["query"]
    (sent,) = sim.stats.log  # one server call: the turn itself, with the tools as sent
    assert sent.body["tools"] == [TOOL] and sent.model == "m-math"
    colm = resp.model_extra["colm"]
    assert {"step": "tool_calls", "choice": "server"}.items() <= colm["decisions"][0].items()
    assert colm["usage"]["server_completion_tokens"] == resp.usage.completion_tokens


def test_the_follow_up_turn_with_the_tool_result_is_answered(router, sim):
    called = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"query": "apple"}'}}
    messages = ASK + [{"role": "assistant", "content": None, "tool_calls": [called]},
                      {"role": "tool", "tool_call_id": "call_1", "content": "a round fruit"}]
    sim.reset()
    resp = router.chat.completions.create(model="colm", messages=messages, tools=[TOOL], tool_choice="none",
                                          extra_body=GUIDE)
    assert resp.choices[0].message.content and resp.choices[0].finish_reason == "stop"
    notes = [r.body for r in sim.stats.log]
    assert notes and all("a round fruit" in json.dumps(b["messages"]) for b in notes)  # the servers see the result


def test_a_streamed_tool_call_from_colm_arrives_with_every_argument_delta(router):
    chunks = list(router.chat.completions.create(model="colm", messages=ASK, tools=[TOOL], stream=True,
                                                 extra_body=GUIDE))
    deltas = [tc for c in chunks for ch in c.choices for tc in (ch.delta.tool_calls or [])]
    assert deltas[0].function.name == "lookup"
    assert json.loads("".join(d.function.arguments or "" for d in deltas))["query"]
    assert [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason] == ["tool_calls"]


def test_a_strategy_configured_so_lets_the_client_model_write_the_tool_call(router, sim, fake):
    sim.reset()
    resp = router.chat.completions.create(model="colm", messages=ASK, tools=[TOOL], tool_choice="required",
                                          extra_body={"colm": {"strategy": "cascade", "trace": True}})
    call = resp.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup" and isinstance(json.loads(call.function.arguments)["query"], str)
    assert sim.stats.requests == 0 and fake.requests[-1].structured is not None
    strategies = {s["name"]: s for s in router.get("/colm/strategies", cast_to=object)["strategies"]}
    assert strategies["cascade"]["tool_calls"]["runs_on"] == "client"
    assert strategies["guide"]["tool_calls"]["runs_on"] == "server"


@pytest.mark.parametrize("stream", [False, True])
def test_colm_writes_the_answer_under_the_apps_json_schema(router, fake, stream):
    fmt = {"type": "json_schema", "json_schema": {"name": "entry", "schema": SCHEMA, "strict": True}}
    if stream:
        chunks = list(router.chat.completions.create(model="colm", messages=ASK, response_format=fmt, stream=True,
                                                     extra_body=GUIDE))
        text = "".join(ch.delta.content or "" for c in chunks for ch in c.choices)
    else:
        text = router.chat.completions.create(model="colm", messages=ASK, response_format=fmt,
                                              extra_body=GUIDE).choices[0].message.content
    assert set(json.loads(text)) == {"word", "meaning"}
    final = [r for r in fake.requests if r.structured]
    assert final[-1].structured == {"json": SCHEMA}


def test_shepherd_refuses_a_response_format_by_name(router):
    with pytest.raises(openai.BadRequestError) as err:
        router.chat.completions.create(model="colm", messages=ASK, response_format={"type": "json_object"},
                                       extra_body={"colm": {"strategy": "shepherd"}})
    assert err.value.body["param"] == "response_format" and "guide" in err.value.body["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_colm_reports_the_logprobs_of_the_tokens_the_client_model_wrote(router, stream):
    if stream:
        chunks = list(router.chat.completions.create(model="colm", messages=ASK, logprobs=True, top_logprobs=2,
                                                     stream=True, extra_body=GUIDE))
        content = [t for c in chunks for ch in c.choices if ch.logprobs for t in ch.logprobs.content]
        text = "".join(ch.delta.content or "" for c in chunks for ch in c.choices)
    else:
        choice = router.chat.completions.create(model="colm", messages=ASK, logprobs=True, top_logprobs=2,
                                                extra_body=GUIDE).choices[0]
        content, text = choice.logprobs.content, choice.message.content
    assert "".join(t.token for t in content).split() == text.split()
    assert all(len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token for t in content)


def test_each_specialist_prompt_carries_its_own_prompt_cache_key(router, sim):
    sim.reset()
    router.chat.completions.create(model="colm", messages=[{"role": "user", "content": "A question never cached."}],
                                   extra_body=GUIDE)
    keys = {r.model: r.body.get("prompt_cache_key") for r in sim.stats.log}
    assert keys == {"m-math": "colm-math", "m-conv": "colm-conv", "m-code": "colm-code", "m-eye": "colm-eye"}


def test_colm_writes_the_answer_with_the_apps_sampling(router, fake):
    router.chat.completions.create(model="colm", messages=[{"role": "user", "content": "Sample me."}],
                                   temperature=0.4, top_p=0.8, seed=3, stop=["END"], presence_penalty=0.5,
                                   frequency_penalty=0.25, max_completion_tokens=40, extra_body=GUIDE)
    answer = fake.requests[-1]  # the last client write is the answer
    assert (answer.temperature, answer.top_p, answer.seed, answer.stop) == (0.4, 0.8, 3, ["END"])
    assert (answer.presence_penalty, answer.frequency_penalty, answer.max_tokens) == (0.5, 0.25, 40)
