"""The client model answers like vLLM's OpenAI server, through both users of the one code path
(`completion_events`): the router's `colm-client` model id and the embedded stand-in server.

Each test runs against both, served on a real socket and read with the official openai SDK, over
a FakeClient engine (scripted answers; under a JSON schema with nothing scripted it writes the
schema's smallest instance, as structured outputs would)."""

from __future__ import annotations

import json
import re

import openai
import pytest

from colm_serve.accounting.ledger import Ledger
from colm_serve.accounting.stores import MemoryStore
from colm_serve.api.routes import create_api
from colm_serve.collab.selection import AllSelector
from colm_serve.service import RouterService
from colm_serve.stand_in.service import StandInService
from tests.fakes import FakeClient, FakeUpstreams, app_args
from tests.reliability.conftest import ServedApp

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]
CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")


class Served:
    """One user of the code path, on a real socket: an SDK client, its model id, its engine."""

    def __init__(self, kind: str) -> None:
        self.kind, self.engine = kind, FakeClient()
        if kind == "colm-client":
            args = app_args()
            service = RouterService(args, ledger=Ledger(args.budgets, MemoryStore()), upstreams=FakeUpstreams(),
                                    client=self.engine, selectors={"all": AllSelector(), "llm": AllSelector()})
            app, self.model = create_api(service), "colm-client"
        else:
            stand_in = StandInService({"served_models": ["local-model"]}, engine=None, client=self.engine)
            app, self.model = stand_in.__serve_build_asgi_app__(), "local-model"
        self._served = ServedApp(app)

    def __enter__(self) -> "Served":
        self._served.__enter__()
        self.sdk = openai.OpenAI(base_url=self._served.url + "/v1", api_key="x", max_retries=0, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.sdk.close()
        self._served.__exit__(*exc)

    def create(self, **kw):
        return self.sdk.chat.completions.create(model=self.model, **kw)

    def stream(self, **kw) -> list:
        return list(self.create(stream=True, stream_options={"include_usage": True}, **kw))

    def script(self, *answers: str) -> None:
        self.engine.answers = list(answers)


@pytest.fixture(params=["colm-client", "stand-in"])
def served(request):
    with Served(request.param) as s:
        yield s


def calls_json(*calls: tuple[str, dict]) -> str:
    return json.dumps({"tool_calls": [{"name": name, "arguments": args} for name, args in calls]})


# --- n and logprobs ----------------------------------------------------------------------


def test_n_choices_come_from_one_engine_request(served):
    served.script("red", "blue", "green")
    resp = served.create(messages=ASK, n=3, temperature=1.0)
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert [c.message.content for c in resp.choices] == ["red", "blue", "green"]
    assert len(served.engine.requests) == 1 and served.engine.requests[0].n == 3
    assert resp.usage.completion_tokens == 3 and resp.usage.prompt_tokens == 50


def test_n_streamed_chunks_carry_their_choice_index(served):
    served.script("a b", "c d e")
    chunks = served.stream(messages=ASK, n=2, temperature=1.0)
    text: dict[int, str] = {}
    finished = set()
    for chunk in chunks:
        for choice in chunk.choices:
            text[choice.index] = text.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finished.add(choice.index)
    assert text == {0: "a b", 1: "c d e"} and finished == {0, 1}
    (usage,) = [c.usage for c in chunks if c.usage]
    assert usage.completion_tokens == 5 and all(c.choices == [] for c in chunks if c.usage)


def test_logprobs_come_in_openais_shape(served):
    served.script("Hello there")
    resp = served.create(messages=ASK, logprobs=True, top_logprobs=2)
    content = resp.choices[0].logprobs.content
    assert [t.token for t in content] == ["Hello", " there"]
    for token in content:
        assert token.logprob <= 0 and token.bytes == list(token.token.encode())
        assert len(token.top_logprobs) == 2 and token.top_logprobs[0].logprob >= token.top_logprobs[1].logprob
    assert served.engine.requests[0].top_logprobs == 2


def test_logprobs_without_top_logprobs_have_empty_alternatives(served):
    resp = served.create(messages=ASK, logprobs=True)
    assert all(t.top_logprobs == [] for t in resp.choices[0].logprobs.content)
    assert served.create(messages=ASK).choices[0].logprobs is None


def test_streamed_logprobs_ride_on_each_chunk(served):
    served.script("one two three")
    chunks = served.stream(messages=ASK, logprobs=True, top_logprobs=1)
    tokens = [t.token for c in chunks for ch in c.choices if ch.logprobs for t in ch.logprobs.content]
    assert tokens == ["one", " two", " three"]


def test_top_logprobs_without_logprobs_is_a_400(served):
    with pytest.raises(openai.BadRequestError) as err:
        served.create(messages=ASK, top_logprobs=2)
    assert err.value.body["param"] == "top_logprobs"


# --- sampling parameters and response_format -----------------------------------------------


def test_penalties_and_logit_bias_reach_the_engine(served):
    served.create(messages=ASK, presence_penalty=0.5, frequency_penalty=-0.25, logit_bias={"42": -100, "7": 3})
    req = served.engine.requests[0]
    assert (req.presence_penalty, req.frequency_penalty) == (0.5, -0.25)
    assert req.logit_bias == {42: -100.0, 7: 3.0}


@pytest.mark.parametrize("bias", [{"x": 1}, {"5": 101}, {"-1": 1}])
def test_bad_logit_bias_is_a_400(served, bias):
    with pytest.raises(openai.BadRequestError) as err:
        served.create(messages=ASK, logit_bias=bias)
    assert err.value.body["param"] == "logit_bias"


SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


@pytest.mark.parametrize(("fmt", "structured"), [
    ({"type": "json_object"}, {"json_object": True}),
    ({"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}, {"json": SCHEMA}),
])
def test_response_format_constrains_the_engine(served, fmt, structured):
    resp = served.create(messages=ASK, response_format=fmt)
    assert served.engine.requests[0].structured == structured
    if "json" in structured:
        assert json.loads(resp.choices[0].message.content) == {"name": "x", "age": 0}


# --- tools -----------------------------------------------------------------------------------


def test_tool_choice_required_writes_tool_calls_under_the_tools_schema(served):
    served.script(calls_json(("get_weather", {"city": "Paris"}), ("get_time", {"city": "Paris"})))
    resp = served.create(messages=ASK, tools=[WEATHER, TIME], tool_choice="required")
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert all(CALL_ID.match(c.id) and c.type == "function" for c in calls)
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    req = served.engine.requests[0]
    schema = req.structured["json"]
    assert schema["properties"]["tool_calls"]["minItems"] == 1 and "maxItems" not in schema["properties"]["tool_calls"]
    names = [s["properties"]["name"]["enum"] for s in schema["properties"]["tool_calls"]["items"]["anyOf"]]
    assert names == [["get_weather"], ["get_time"]]
    system = req.messages[0]
    assert system["role"] == "system" and "get_weather" in system["content"] and '"city"' in system["content"]


def test_a_named_tool_is_the_only_one_the_model_may_call(served):
    resp = served.create(messages=ASK, tools=[WEATHER, TIME],
                         tool_choice={"type": "function", "function": {"name": "get_time"}})
    (call,) = resp.choices[0].message.tool_calls
    assert call.function.name == "get_time" and json.loads(call.function.arguments) == {"city": "x"}
    calls = served.engine.requests[0].structured["json"]["properties"]["tool_calls"]
    assert calls["maxItems"] == 1 and calls["items"]["properties"]["name"]["enum"] == ["get_time"]


def test_parallel_tool_calls_false_allows_one_call(served):
    served.create(messages=ASK, tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False)
    assert served.engine.requests[0].structured["json"]["properties"]["tool_calls"]["maxItems"] == 1


def test_tool_choice_auto_may_answer_directly(served):
    served.script(json.dumps({"content": "It is sunny."}))
    resp = served.create(messages=ASK, tools=[WEATHER])
    choice = resp.choices[0]
    assert choice.message.content == "It is sunny." and not choice.message.tool_calls
    assert choice.finish_reason == "stop"
    kinds = [set(s["properties"]) for s in served.engine.requests[0].structured["json"]["anyOf"]]
    assert kinds == [{"tool_calls"}, {"content"}]


def test_tool_choice_auto_may_call(served):
    served.script(calls_json(("get_weather", {"city": "Oslo", "unit": "C"})))
    resp = served.create(messages=ASK, tools=[WEATHER], tool_choice="auto")
    (call,) = resp.choices[0].message.tool_calls
    assert json.loads(call.function.arguments) == {"city": "Oslo", "unit": "C"}
    assert resp.choices[0].finish_reason == "tool_calls"


def test_tool_choice_none_answers_freely(served):
    served.script("Plain words.")
    resp = served.create(messages=ASK, tools=[WEATHER], tool_choice="none")
    assert resp.choices[0].message.content == "Plain words."
    assert served.engine.requests[0].structured is None


def test_an_unknown_named_tool_is_a_400(served):
    with pytest.raises(openai.BadRequestError) as err:
        served.create(messages=ASK, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}})
    assert err.value.body["param"] == "tool_choice"


def test_streamed_tool_calls_are_openai_deltas_whose_arguments_concatenate_to_json(served):
    arguments = {"city": "São Paulo, a long name to need several pieces", "unit": "F"}
    served.script(calls_json(("get_weather", arguments), ("get_time", {"city": "Lima"})))
    chunks = served.stream(messages=ASK, tools=[WEATHER, TIME], tool_choice="required")
    assert chunks[0].choices[0].delta.role == "assistant"
    calls: dict[int, dict] = {}
    finish = None
    for chunk in chunks:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or ():
                if delta.id:
                    assert CALL_ID.match(delta.id) and delta.function.arguments == "" and delta.index not in calls
                    calls[delta.index] = {"name": delta.function.name, "arguments": ""}
                else:
                    calls[delta.index]["arguments"] += delta.function.arguments
    assert finish == "tool_calls"
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == arguments and json.loads(calls[1]["arguments"]) == {"city": "Lima"}
    assert sum(1 for c in chunks for ch in c.choices for d in ch.delta.tool_calls or () if d.id is None) > 2
    assert [bool(c.usage.completion_tokens) for c in chunks if c.usage] == [True]


def test_a_follow_up_turn_reads_the_tool_results(served):
    served.script(calls_json(("get_weather", {"city": "Paris"})), json.dumps({"content": "18 C and sunny in Paris."}))
    first = served.create(messages=ASK, tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]
    history = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 18, "sky": "sunny"}'}]
    second = served.create(messages=history, tools=[WEATHER])
    assert second.choices[0].message.content == "18 C and sunny in Paris."
    turns = served.engine.requests[1].messages
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user"]
    assert turns[2]["content"] == 'Called tool get_weather with {"city": "Paris"}'
    assert turns[3]["content"] == 'Tool result (get_weather): {"temp": 18, "sky": "sunny"}'


def test_the_sdks_own_tool_helpers_parse_the_answer(served):
    """openai's `parse` checks strict tool arguments against a pydantic model."""
    from pydantic import BaseModel

    class GetWeather(BaseModel):
        city: str

    served.script(calls_json(("GetWeather", {"city": "Rome"})))
    resp = served.sdk.chat.completions.parse(model=served.model, messages=ASK,
                                              tools=[openai.pydantic_function_tool(GetWeather)], tool_choice="required")
    assert resp.choices[0].message.tool_calls[0].function.parsed_arguments == GetWeather(city="Rome")


def test_n_with_greedy_decoding_is_a_400_naming_n(served):
    with pytest.raises(openai.BadRequestError) as err:
        served.create(messages=ASK, n=2, temperature=0)
    assert err.value.body["param"] == "n"
