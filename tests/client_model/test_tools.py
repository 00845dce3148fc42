"""Tool turns in plain Python: the conversation as text turns, the schema a turn is written
under, and an answer cut short before its JSON closed."""

from __future__ import annotations

import pytest

from colm_serve.client_model import tools
from colm_serve.client_model.completions import completion_events
from colm_serve.client_model.types import Generation, GenerationRequest
from colm_serve.errors import InvalidRequest
from colm_serve.outcome import Completion
from colm_serve.protocol.openai import ChatCompletionRequest
from colm_serve.protocol.trace import Trace

F = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
G = {"type": "function", "function": {"name": "g"}}
ASK = [{"role": "user", "content": "hi"}]


def chat(**kw) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": ASK, **kw})


def test_consecutive_tool_results_are_one_user_turn():
    req = chat(messages=[
        {"role": "developer", "content": "Be brief."}, *ASK,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
        {"role": "function", "name": "h", "content": "three"},
    ])
    assert tools.render(req.messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": 'Called tool f with {}\nCalled tool g with {"a": 1}'},
        {"role": "user", "content": "Tool result (f): one\nTool result (g): two\nTool result (h): three"},
    ]


def test_allowed_tools_narrow_the_choice():
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "g"}}]}}
    turn = tools.tool_turn(chat(tools=[F, G], tool_choice=choice), content_schema=None)
    items = turn.schema["properties"]["tool_calls"]["items"]
    assert items["properties"]["name"]["enum"] == ["g"] and items["properties"]["arguments"] == tools.NO_ARGUMENTS


@pytest.mark.parametrize("req", [
    chat(tool_choice="required"),
    chat(tools=[F], tool_choice={"type": "function", "function": {"name": "g"}}),
    chat(tools=[F], tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "sometimes", "tools": []}}),
])
def test_a_choice_no_tool_can_meet_is_refused(req):
    with pytest.raises(InvalidRequest) as err:
        tools.tool_turn(req, content_schema=None)
    assert err.value.param == "tool_choice"


def test_auto_with_a_response_format_constrains_the_direct_answer():
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    turn = tools.tool_turn(chat(tools=[F]), content_schema=schema)
    assert turn.schema["anyOf"][1]["properties"]["content"] == schema
    assert tools.read('{"content": {"x": 1}}') == ('{"x": 1}', [])


class CutShort:
    """An engine that runs out of tokens before the JSON closes."""

    async def generate(self, req: GenerationRequest) -> Generation:
        return Generation(text='{"tool_calls": [{"name": "f", "argu', prompt_tokens=9, completion_tokens=12,
                          finish_reason="length")


async def test_a_tool_call_cut_short_is_the_text_as_written_with_finish_length():
    trace = Trace()
    (event,) = [e async for e in completion_events(CutShort(), chat(tools=[F], tool_choice="required"),
                                                    model_name="m", request_id="r", trace=trace, stream=False)]
    assert isinstance(event, Completion)
    (choice,) = event.body["choices"]
    assert choice["finish_reason"] == "length" and "tool_calls" not in choice["message"]
    assert choice["message"]["content"].startswith('{"tool_calls"')
    assert trace.usage.client_prompt_tokens == 9 and trace.usage.client_completion_tokens == 12
