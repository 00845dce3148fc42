"""Real client libraries against the real app, with only the base URL changed.

LangChain (`langchain-openai`), instructor, the OpenAI Agents SDK (`agents`, over /v1/responses)
and pydantic-ai, each used the way its users use it, no mocks: tool round trips (the model
calls a tool, the test runs it and sends the result back, the model answers in text), streamed
tool calls, and structured outputs that come back as validated pydantic objects.

The local models are tiny (a 135M SmolLM2 writes the answers and, under structured outputs,
the tool calls), so every test forces the tool call where the library allows it and caps
`max_tokens`; the turn after a tool result does not force a tool again.
"""

from __future__ import annotations

import json
import operator
from functools import reduce

import openai
import pytest
from pydantic import BaseModel, Field

pytestmark = pytest.mark.serve

SERVER = "server/gpt-conv"  # a server model id from serve_config.yaml, passed through to the upstream
MODELS = [SERVER, "colm"]
API_KEY = "x"  # the default app has no keys
TIMEOUT_S = 120
MAX_TOKENS = 96
QUESTION = "What is the weather in Paris right now? Use the get_weather tool."
CITY_QUESTION = "Which city is the capital of France? Answer with the city and its country."


def _weather(city: str) -> str:
    return f"It is sunny and 21 degrees Celsius in {city}."


class Capital(BaseModel):
    """The capital city of a country."""

    city: str = Field(min_length=1, max_length=40, description="the capital city")
    country: str = Field(min_length=1, max_length=40, description="the country it is the capital of")


def _assert_capital(obj: object) -> None:
    assert isinstance(obj, Capital), f"not a validated Capital: {obj!r}"
    Capital.model_validate(obj.model_dump())
    assert obj.city.strip() and obj.country.strip()


def _assert_city_args(args: dict) -> str:
    assert set(args) == {"city"}, f"arguments do not fit the schema {{city: str}}: {args!r}"
    assert isinstance(args["city"], str) and args["city"].strip(), args
    return args["city"]


# --- langchain-openai -------------------------------------------------------------------------


def _chat(app_url: str, model: str, **kwargs):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=model, base_url=f"{app_url}/v1", api_key=API_KEY, max_tokens=MAX_TOKENS, temperature=0,
                      timeout=TIMEOUT_S, max_retries=0, **kwargs)


def _weather_tool():
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Return the current weather in a city."""
        return _weather(city)

    return get_weather


@pytest.mark.parametrize("model", MODELS)
def test_langchain_tool_round_trip(app_url, model):
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    get_weather = _weather_tool()
    llm = _chat(app_url, model)
    messages = [HumanMessage(QUESTION)]
    ai = llm.bind_tools([get_weather], tool_choice="any").invoke(messages)  # "any" is sent as "required"
    assert isinstance(ai, AIMessage) and ai.tool_calls, f"no tool call: {ai!r}"
    assert not ai.invalid_tool_calls, ai.invalid_tool_calls
    call = ai.tool_calls[0]
    assert call["name"] == "get_weather" and call["id"], call
    city = _assert_city_args(call["args"])
    result = get_weather.invoke(call)  # a ToolCall in, a ToolMessage out, as LangChain agents do
    assert isinstance(result, ToolMessage) and result.tool_call_id == call["id"] and city in result.content

    final = llm.bind_tools([get_weather], tool_choice="none").invoke([*messages, ai, result])
    assert isinstance(final, AIMessage) and not final.tool_calls, final
    assert isinstance(final.content, str) and final.content.strip(), f"no text answer: {final!r}"


def _collect(chunks: list):
    assert chunks, "the stream was empty"
    return reduce(operator.add, chunks)  # AIMessageChunk + AIMessageChunk concatenates the argument chunks


def _assert_streamed_tool_call(full) -> dict:
    assert full.tool_call_chunks, f"no tool call chunks: {full!r}"
    first = full.tool_call_chunks[0]
    assert first["name"] == "get_weather" and first["id"], first
    args = json.loads(first["args"])  # the concatenated argument chunks are one JSON document
    _assert_city_args(args)
    assert full.tool_calls and full.tool_calls[0]["args"] == args, (full.tool_calls, args)
    assert not full.invalid_tool_calls, full.invalid_tool_calls
    return full.tool_calls[0]


@pytest.mark.parametrize("model", MODELS)
def test_langchain_streamed_tool_round_trip(app_url, model):
    from langchain_core.messages import HumanMessage

    get_weather = _weather_tool()
    llm = _chat(app_url, model)
    messages = [HumanMessage(QUESTION)]
    full = _collect(list(llm.bind_tools([get_weather], tool_choice="any").stream(messages)))
    call = _assert_streamed_tool_call(full)
    result = get_weather.invoke(call)

    text_chunks = list(llm.bind_tools([get_weather], tool_choice="none").stream([*messages, full, result]))
    final = _collect(text_chunks)
    assert not final.tool_call_chunks, final
    assert isinstance(final.content, str) and final.content.strip(), f"no streamed text answer: {final!r}"


# langchain-openai caches its async HTTP client per (base_url, timeout) for the whole process, so every
# test that uses it must run on one event loop, as an application's calls do.
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("model", MODELS)
async def test_langchain_astream_tool_call_with_a_pydantic_tool(app_url, model):
    from langchain_core.messages import HumanMessage

    class get_weather(BaseModel):  # noqa: N801 - the class name is the tool's name
        """Return the current weather in a city."""

        city: str = Field(description="the city")

    llm = _chat(app_url, model).bind_tools([get_weather], tool_choice="get_weather")  # a named tool_choice
    chunks = [chunk async for chunk in llm.astream([HumanMessage(QUESTION)])]
    _assert_streamed_tool_call(_collect(chunks))


@pytest.mark.parametrize("method", [None, "function_calling"])
@pytest.mark.parametrize("model", MODELS)
def test_langchain_with_structured_output(app_url, model, method):
    """The default method of ChatOpenAI.with_structured_output is "json_schema" (response_format, strict)."""
    llm = _chat(app_url, model)
    structured = llm.with_structured_output(Capital) if method is None else llm.with_structured_output(Capital, method=method)
    _assert_capital(structured.invoke(CITY_QUESTION))


def test_langchain_structured_output_json_schema_include_raw(app_url):
    structured = _chat(app_url, "colm").with_structured_output(Capital, method="json_schema", include_raw=True)
    out = structured.invoke(CITY_QUESTION)
    assert out["parsing_error"] is None, out["parsing_error"]
    _assert_capital(out["parsed"])
    assert Capital.model_validate_json(out["raw"].content) == out["parsed"]


# --- instructor -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["JSON_SCHEMA", "TOOLS"])
def test_instructor_returns_a_validated_object(app_url, mode):
    import instructor  # installed by `make setup` with --no-deps (see the Makefile)

    client = instructor.from_openai(openai.OpenAI(base_url=f"{app_url}/v1", api_key=API_KEY, timeout=TIMEOUT_S, max_retries=0),
                                    mode=getattr(instructor.Mode, mode))
    capital = client.chat.completions.create(
        model="colm", response_model=Capital, max_retries=1, max_tokens=MAX_TOKENS, temperature=0,
        messages=[{"role": "user", "content": CITY_QUESTION}],
    )
    _assert_capital(capital)


# --- OpenAI Agents SDK, over /v1/responses ----------------------------------------------------


def _agent(app_url: str, model: str, calls: list[str]):
    from agents import Agent, ModelSettings, OpenAIResponsesModel, function_tool, set_tracing_disabled

    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str) -> str:
        """Return the current weather in a city.

        Args:
            city: the city.
        """
        calls.append(city)
        return _weather(city)

    client = openai.AsyncOpenAI(base_url=f"{app_url}/v1", api_key=API_KEY, timeout=TIMEOUT_S, max_retries=0)
    # The agent's next turn after a tool ran sends tool_choice "auto", and a 135M model under "auto" calls the tool
    # again until max_turns: so the run ends at the tool's output (the follow-up turn through /v1/responses is
    # tested below with the openai SDK). The SDK raises on an "incomplete" response, so the cap is roomier.
    return Agent(name="weather", instructions="You answer questions about the weather in one short sentence. "
                                              "Use the get_weather tool.",
                 tools=[get_weather], model=OpenAIResponsesModel(model=model, openai_client=client),
                 model_settings=ModelSettings(tool_choice="required", max_tokens=2 * MAX_TOKENS, temperature=0),
                 tool_use_behavior="stop_on_first_tool")


def _assert_agent_items(result, calls: list[str]) -> None:
    from agents import ToolCallItem, ToolCallOutputItem

    assert calls, "the tool was never called"
    _assert_city_args({"city": calls[0]})
    tool_calls = [item for item in result.new_items if isinstance(item, ToolCallItem)]
    assert tool_calls and tool_calls[0].raw_item.name == "get_weather", result.new_items
    _assert_city_args(json.loads(tool_calls[0].raw_item.arguments))
    assert any(isinstance(item, ToolCallOutputItem) for item in result.new_items), result.new_items
    assert isinstance(result.final_output, str) and result.final_output.strip(), f"no final output: {result.final_output!r}"


@pytest.mark.parametrize("model", MODELS)
async def test_openai_agents_run_calls_the_tool(app_url, model):
    from agents import Runner

    calls: list[str] = []
    result = await Runner.run(_agent(app_url, model, calls), QUESTION, max_turns=4)
    _assert_agent_items(result, calls)


async def test_openai_agents_run_streamed_calls_the_tool(app_url):
    from agents import Runner

    calls: list[str] = []
    result = Runner.run_streamed(_agent(app_url, "colm", calls), QUESTION, max_turns=4)
    events = [event async for event in result.stream_events()]
    assert result.is_complete
    raw = [event.data.type for event in events if event.type == "raw_response_event"]
    assert "response.created" in raw and "response.completed" in raw, raw
    assert "response.function_call_arguments.delta" in raw, raw
    items = [event.item.type for event in events if event.type == "run_item_stream_event"]
    assert "tool_call_item" in items and "tool_call_output_item" in items, items
    _assert_agent_items(result, calls)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", MODELS)
def test_a_responses_tool_round_trip_continues_a_stored_response(app_url, model, stream):
    """What an agent does with /v1/responses, one turn at a time: a forced call, then the tool's
    output as a `function_call_output` item on `previous_response_id`, answered in text."""
    client = openai.OpenAI(base_url=f"{app_url}/v1", api_key=API_KEY, timeout=TIMEOUT_S, max_retries=0)
    tool = {"type": "function", "name": "get_weather", "description": "Return the current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                           "additionalProperties": False}, "strict": True}
    first = client.responses.create(model=model, input=QUESTION, tools=[tool], tool_choice="required",
                                    max_output_tokens=2 * MAX_TOKENS, temperature=0)
    (call,) = [item for item in first.output if item.type == "function_call"]
    _assert_city_args(json.loads(call.arguments))
    follow_up = dict(model=model, previous_response_id=first.id, tools=[tool], tool_choice="none",
                     max_output_tokens=2 * MAX_TOKENS, temperature=0,
                     input=[{"type": "function_call_output", "call_id": call.call_id,
                             "output": _weather(json.loads(call.arguments)["city"])}])
    if stream:
        events = list(client.responses.create(**follow_up, stream=True))
        assert [e.type for e in events][:2] == ["response.created", "response.in_progress"]
        second = events[-1].response
        assert events[-1].type in ("response.completed", "response.incomplete")
        assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == second.output_text
    else:
        second = client.responses.create(**follow_up)
    assert second.status in ("completed", "incomplete") and second.output_text.strip()  # incomplete: at the cap
    assert not [item for item in second.output if item.type == "function_call"]


# --- pydantic-ai ------------------------------------------------------------------------------


async def test_pydantic_ai_agent_calls_the_tool(app_url):
    from pydantic_ai import Agent
    from pydantic_ai.providers.openai import OpenAIProvider

    try:
        from pydantic_ai.models.openai import OpenAIChatModel as Model
    except ImportError:  # pydantic-ai < 1.0
        from pydantic_ai.models.openai import OpenAIModel as Model

    calls: list[str] = []
    model = Model("colm", provider=OpenAIProvider(base_url=f"{app_url}/v1", api_key=API_KEY))

    def settings(ctx):  # force the tool on the first request only; a static "required" would loop (pydantic-ai refuses it)
        first = not any(part.part_kind == "tool-return" for msg in ctx.messages for part in getattr(msg, "parts", []))
        return {"max_tokens": MAX_TOKENS, "temperature": 0, "timeout": TIMEOUT_S,
                "tool_choice": "required" if first else "none"}

    agent = Agent(model, instructions="You answer questions about the weather. Use the get_weather tool.",
                  model_settings=settings)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Return the current weather in a city.

        Args:
            city: the city.
        """
        calls.append(city)
        return _weather(city)

    result = await agent.run(QUESTION)
    assert calls, "the tool was never called"
    _assert_city_args({"city": calls[0]})
    assert isinstance(result.output, str) and result.output.strip(), f"no output: {result.output!r}"
    kinds = [part.part_kind for msg in result.all_messages() for part in msg.parts]
    assert "tool-call" in kinds and "tool-return" in kinds and kinds[-1] == "text", kinds
