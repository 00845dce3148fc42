"""Every Chat Completions parameter of the openai SDK, walked from the SDK's own types.

`server/<name>` forwards each one unchanged: the upstream (a real HTTP server) records the body
it got, and the test compares. `colm-client` and `colm` honour each one (200) or refuse it with
a 400 that names it, as `collab.params` says; the honoured ones are tested for their effect in
their own tests (tests/client_model, tests/collab, tests/clients).
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from colm_serve.accounting.ledger import Ledger
from colm_serve.accounting.stores import MemoryStore
from colm_serve.api.routes import create_api
from colm_serve.collab import params as policy
from colm_serve.collab.selection import AllSelector
from colm_serve.config import AppArgs
from colm_serve.protocol.openai import SDK_PARAMS
from colm_serve.server_proxy.proxy import ServerProxy
from colm_serve.service import RouterService
from tests.fakes import FakeClient, app_args
from tests.reliability.conftest import ProxyUpstreams, ServedApp
from tests.upstream_sim import Fault, UpstreamSim

TOOL = {"type": "function", "function": {"name": "lookup", "description": "Look a word up.",
                                         "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                                                        "required": ["query"]}}}
# A value for each parameter, as a client app would send it.
SAMPLE = {
    "messages": [{"role": "user", "content": "Say hi."}],
    "model": None,  # the model id under test
    "audio": {"voice": "alloy", "format": "wav"},
    "frequency_penalty": 0.5,
    "function_call": "auto",
    "functions": [TOOL["function"]],
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "max_completion_tokens": 24,
    "max_tokens": 24,
    "metadata": {"app": "conformance"},
    "modalities": ["text"],
    "moderation": {"input": {"mode": "score"}},
    "n": 2,
    "parallel_tool_calls": False,
    "prediction": {"type": "content", "content": "Hi."},
    "presence_penalty": 0.25,
    "prompt_cache_key": "conformance-1",
    "prompt_cache_options": {"mode": "explicit"},
    "prompt_cache_retention": "24h",
    "reasoning_effort": "low",
    "response_format": {"type": "json_object"},
    "safety_identifier": "user-42",
    "seed": 7,
    "service_tier": "auto",
    "stop": ["END"],
    "store": False,
    "stream": True,
    "stream_options": {"include_usage": True},
    "temperature": 0.3,
    "tool_choice": "auto",
    "tools": [TOOL],
    "top_logprobs": 2,
    "top_p": 0.9,
    "user": "user-42",
    "verbosity": "low",
    "web_search_options": {"search_context_size": "low"},
}
# Parameters that only make sense with another one.
NEEDS = {"top_logprobs": {"logprobs": True}, "stream_options": {"stream": True},
         "parallel_tool_calls": {"tools": [TOOL]}, "tool_choice": {"tools": [TOOL]}}
PARAMS = sorted(SDK_PARAMS - {"model", "messages"})


def test_the_sample_covers_every_parameter_of_the_sdk():
    """A parameter the SDK adds fails here first: add a value, and a rule in collab.params."""
    assert set(SAMPLE) == SDK_PARAMS
    assert SDK_PARAMS <= set(policy.PARAMS)


@pytest.fixture(scope="module")
def sim():
    with UpstreamSim(models=["m-math", "m-conv", "m-code", "m-eye"]) as server:
        yield server


@pytest.fixture(scope="module")
def router(sim):
    base = app_args(servers=[{"name": "a", "base_url": sim.url, "timeout_s": 5}, {"name": "b", "base_url": sim.url}])
    thinker = {"name": "think", "description": "reasoning", "server": "a", "model": "o-reasoning",
               "system_prompt": "THINK", "price_in_per_m": 1, "price_cached_in_per_m": 0.5, "price_out_per_m": 4}
    args = AppArgs.model_validate({**base.model_dump(), "specialists": [*base.model_dump()["specialists"], thinker]})
    ups = ProxyUpstreams({s.name: ServerProxy(s) for s in args.servers})
    service = RouterService(args, ledger=Ledger(args.budgets, MemoryStore()), upstreams=ups,
                            client=FakeClient(), selectors={"all": AllSelector()})
    with ServedApp(create_api(service)) as served:
        yield openai.OpenAI(base_url=served.url + "/v1", api_key="x", max_retries=0, timeout=30)


def request(param: str, model: str) -> dict:
    return {"model": model, "messages": SAMPLE["messages"], **NEEDS.get(param, {}), param: SAMPLE[param]}


def send(client: openai.OpenAI, body: dict) -> object:
    """Through the SDK as a client app sends it; a stream is read to its end."""
    if body.get("stream"):
        return list(client.chat.completions.create(**body))
    return client.chat.completions.create(**body)


@pytest.mark.parametrize("param", PARAMS)
def test_the_pass_through_forwards_every_parameter_unchanged(router, sim, param):
    sim.reset()
    body = request(param, "server/math")
    send(router, body)
    (record,) = sim.stats.log
    for key, value in body.items():
        if key == "model":
            assert record.body["model"] == "m-math"
        elif key == "stream_options":  # billing needs the usage; the client's own options go on too
            assert record.body[key] == {**value, "include_usage": True}
        else:
            assert record.body[key] == value, key


@pytest.mark.parametrize("kind", policy.LOCAL_KINDS)
@pytest.mark.parametrize("param", PARAMS)
def test_the_local_models_honour_or_refuse_by_name(router, param, kind):
    model = "colm" if kind == "colm" else "colm-client"
    reason = policy.rule(param, kind).refuse
    body = request(param, model)
    if kind == "colm":
        body["extra_body"] = {"colm": {"strategy": "guide", "selector": "all", "iterations": 0}}
    refusal = reason(SAMPLE[param]) if reason else None
    if refusal is None:
        send(router, body)
        return
    with pytest.raises(openai.BadRequestError) as err:
        send(router, body)
    assert err.value.body["param"] == param and err.value.body["code"] == "unsupported_parameter"
    assert refusal in err.value.body["message"]


def test_an_unknown_parameter_is_a_400_that_names_it(router):
    with pytest.raises(openai.BadRequestError) as err:
        router.chat.completions.create(model="server/math", messages=SAMPLE["messages"], extra_body={"temprature": 1})
    assert err.value.body["param"] == "temprature"


def test_a_pass_through_answer_comes_back_whole(router, sim):
    sim.reset()
    resp = router.chat.completions.create(model="server/math", messages=SAMPLE["messages"], tools=[TOOL],
                                          tool_choice="required", n=2, logprobs=True, top_logprobs=1)
    assert resp.model == "server/math" and resp.system_fingerprint == "fp_sim" and len(resp.choices) == 2
    call = resp.choices[0].message.tool_calls[0]
    assert call.id == "call_sim0" and json.loads(call.function.arguments)["n"] == 2
    assert resp.choices[0].finish_reason == "tool_calls" and resp.choices[0].message.content is None


def test_a_streamed_tool_call_arrives_with_every_argument_delta(router):
    chunks = list(router.chat.completions.create(model="server/math", messages=SAMPLE["messages"], tools=[TOOL],
                                                 stream=True))
    deltas = [tc for c in chunks for ch in c.choices for tc in (ch.delta.tool_calls or [])]
    assert deltas[0].id == "call_sim0" and deltas[0].function.name == "lookup"
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(arguments) == {"query": "Say hi.", "n": 2}
    assert [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason] == ["tool_calls"]
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage
    assert len({c.id for c in chunks}) == 1 and {c.model for c in chunks} == {"server/math"}
    assert [ch.delta.role for c in chunks for ch in c.choices if ch.delta.role] == ["assistant"]  # the upstream's own


def test_streamed_usage_comes_when_asked_and_bills_what_the_upstream_reported(router, sim):
    sim.reset()
    chunks = list(router.chat.completions.create(model="server/math", messages=SAMPLE["messages"], stream=True,
                                                 stream_options={"include_usage": True}, logprobs=True))
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].completion_tokens > 0
    assert any(ch.logprobs and ch.logprobs.content for c in chunks for ch in c.choices)
    colm = [c.model_extra["colm"] for c in chunks if (c.model_extra or {}).get("colm")]
    assert colm[-1]["usage"]["server_completion_tokens"] == usage[0].completion_tokens


def test_the_api_reference_shows_the_rules_the_router_applies():
    """docs/api.md's table is `python -m colm_serve.collab.params`; README names every parameter."""
    root = Path(__file__).resolve().parents[2]
    assert policy.table() in (root / "docs" / "api.md").read_text()
    readme = (root / "README.md").read_text()
    assert [p for p in sorted(SDK_PARAMS) if f"`{p}`" not in readme] == []


@pytest.mark.parametrize("stream", [False, True])
def test_billing_reads_the_upstreams_usage_reasoning_tokens_included(router, stream):
    """A reasoning model bills its thinking as completion tokens: the router's cost is the
    upstream's own counts at the specialist's prices, and the usage reaches the app intact."""
    body = {"model": "server/think", "messages": [{"role": "user", "content": f"Think ({stream})."}]}
    if stream:
        chunks = list(router.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
        usage = next(c.usage for c in chunks if c.usage)
        colm = next(c.model_extra["colm"] for c in chunks if (c.model_extra or {}).get("colm"))
    else:
        resp = router.chat.completions.create(**body)
        usage, colm = resp.usage, resp.model_extra["colm"]
    assert usage.completion_tokens_details.reasoning_tokens == 5
    assert colm["usage"]["server_completion_tokens"] == usage.completion_tokens
    expected = (usage.prompt_tokens * 1 + usage.completion_tokens * 4) / 1e6
    assert colm["usage"]["cost_usd"] == pytest.approx(expected)


@pytest.mark.parametrize("value", [[], {}, "x", -1])
@pytest.mark.parametrize("kind", policy.LOCAL_KINDS)
def test_any_json_value_of_any_parameter_is_an_answer_or_a_400_never_a_500(router, kind, value):
    model = "colm" if kind == "colm" else "colm-client"
    for param in PARAMS:
        body = {"model": model, "messages": SAMPLE["messages"], "max_tokens": 8, param: value}
        try:
            send(router, body)
        except openai.BadRequestError as err:
            assert err.body["param"], (param, err.body)
        except openai.APIStatusError as err:
            pytest.fail(f"{param}={value!r} on {model}: {err.status_code} {err.body}")


@pytest.mark.parametrize("choice", [{}, {"type": "function"}, {"type": "function", "function": {}},
                                    {"type": "function", "function": {"name": "nope"}}, {"type": "allowed_tools"},
                                    {"type": "custom", "custom": {"name": "lookup"}}])
@pytest.mark.parametrize("model", ["colm-client", "colm"])
def test_a_malformed_tool_choice_is_a_400_that_names_it(router, model, choice):
    with pytest.raises(openai.BadRequestError) as err:
        router.chat.completions.create(model=model, messages=SAMPLE["messages"], tools=[TOOL], tool_choice=choice,
                                       max_tokens=8, extra_body={"colm": {"strategy": "cascade", "selector": "all"}} if model == "colm" else None)
    assert err.value.body["param"].startswith("tool_choice"), err.value.body


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_refuses_the_apps_own_request_is_the_apps_400(router, sim, stream):
    """On the pass-through the parameters are the app's: the server's 400 is passed on as a 400
    (not our 502), and it does not count against the server's breaker."""
    sim.reset()
    sim.set_faults(script=[Fault.error(400, message="Invalid value for 'verbosity'")])
    with pytest.raises(openai.BadRequestError) as err:
        send(router, {"model": "server/math", "messages": SAMPLE["messages"], "verbosity": "loud", "stream": stream})
    assert err.value.body["code"] == "upstream_invalid_request" and "verbosity" in err.value.body["message"]
    assert sim.stats.requests == 1  # not retried
