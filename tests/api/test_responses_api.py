"""/v1/responses through real HTTP with the official openai SDK, over the real app and fakes.

The real RouterService (fake upstreams and client model) serves string and item input; a
scripted service (`ScriptedService`, the chat path's contract: Outcomes with chat bodies,
streams of text, Progress and Chunks) serves the tool-call round trip and the streamed shapes.
Every body and event is parsed by the SDK's own types.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import typing
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from openai.types.responses import Response, ResponseStreamEvent

from colm_serve.accounting.conversations import MemoryResponses, SqliteResponses, build_response_store
from colm_serve.accounting.ledger import Ledger
from colm_serve.accounting.stores import MemoryStore, SqliteStore
from colm_serve.api.auth import hash_key
from colm_serve.api.routes import create_api
from colm_serve.collab.selection import AllSelector
from colm_serve.config import AccountingConfig
from colm_serve.errors import UpstreamError
from colm_serve.outcome import Chunk, Outcome, Progress
from colm_serve.protocol.responses import SDK_PARAMS, ResponsesRequest
from colm_serve.protocol.trace import Trace
from colm_serve.protocol.usage import Usage
from colm_serve.service import RouterService
from tests.fakes import FakeClient, FakeUpstreams, app_args

# Each event type's SDK class, so that a bad event names what is wrong with it.
EVENTS = {typing.get_args(cls.model_fields["type"].annotation)[0]: cls
          for cls in typing.get_args(typing.get_args(ResponseStreamEvent)[0])}


@contextmanager
def served(app) -> Iterator[str]:
    """The app on 127.0.0.1 (a free port) in a thread; yields the base URL ending in /v1."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the app did not start"
        time.sleep(0.01)  # polls a server in another thread; no event loop here
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def client(url: str, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0)


def real_service(*, responses=None, auth: dict | None = None, fake: FakeClient | None = None) -> RouterService:
    args = app_args(**({"auth": auth} if auth else {}))
    return RouterService(args, ledger=Ledger(args.budgets, MemoryStore()), upstreams=FakeUpstreams(reply=lambda c: "math, code"),
                         client=fake or FakeClient(), selectors={"llm": AllSelector(), "all": AllSelector()},
                         responses=responses)


class ScriptedService:
    """RouterService's chat contract, scripted: each chat() takes the next script entry (an
    Outcome, or a list of stream events ending in one, or an exception; the last one repeats)
    and records the request."""

    def __init__(self, script: list[Any], *, responses=None) -> None:
        self.args = app_args()
        self.script = list(script)
        self.requests: list[Any] = []
        self.responses = responses or MemoryResponses()

    async def chat(self, req, *, caller, fill_server_caps: bool = False):
        self.requests.append(req)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]  # the last one repeats
        if isinstance(step, Exception):
            raise step
        if isinstance(step, Outcome):
            return step

        async def events() -> AsyncIterator:
            for event in step:
                if isinstance(event, Exception):
                    raise event
                yield event
        return events()


def trace(prompt: int = 7, completion: int = 3) -> Trace:
    return Trace(usage=Usage(client_prompt_tokens=prompt, client_completion_tokens=completion))


def chat_body(message: dict[str, Any], *, finish: str = "stop", usage: dict | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "server/math",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": usage or {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16,
                               "prompt_tokens_details": {"cached_tokens": 4},
                               "completion_tokens_details": {"reasoning_tokens": 2}}}


WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "strict": True}
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


# --- the real service -------------------------------------------------------------------


@pytest.mark.parametrize("model", ["colm", "colm-client"])
def test_string_input_gets_a_response_the_sdk_reads(model):
    with served(create_api(real_service())) as url:
        resp = client(url).responses.create(model=model, input="What is 2+2?", instructions="Be brief.")
    assert isinstance(resp, Response) and resp.status == "completed" and resp.object == "response"
    assert resp.id.startswith("resp_") and resp.model == model and resp.instructions == "Be brief."
    assert resp.output_text and resp.output[-1].type == "message"
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert "usage" in resp.model_extra["colm"]


def test_items_input_and_instructions_reach_the_chat_path():
    with served(create_api(real_service())) as url:
        resp = client(url).responses.create(model="colm-client", instructions="You are terse.", input=[
            {"role": "user", "content": [{"type": "input_text", "text": "Name a prime."}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "2"}]},
            {"role": "user", "content": "Another one?"}])
    assert resp.status == "completed" and "Another one?" in resp.output_text


def test_stream_over_the_real_service_validates_and_ends_completed():
    with served(create_api(real_service())) as url:
        with client(url).responses.stream(model="colm", input="Reverse a list in Python?") as stream:
            events = list(stream)
            final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text and final.usage.output_tokens > 0


# --- scripted: tools, text.format, streaming shapes ---------------------------------------


def test_function_tool_round_trip():
    service = ScriptedService([
        Outcome("", "tool_calls", trace(), body=chat_body({"content": None, "tool_calls": [TOOL_CALL]}, finish="tool_calls")),
        Outcome("It is sunny in Paris.", "stop", trace(), body=chat_body({"content": "It is sunny in Paris."})),
    ])
    with served(create_api(service)) as url:
        api = client(url)
        first = api.responses.create(model="server/math", input="Weather in Paris?", tools=[WEATHER_TOOL],
                                     tool_choice="auto", parallel_tool_calls=False)
        [call] = [o for o in first.output if o.type == "function_call"]
        assert (call.call_id, call.name, json.loads(call.arguments)) == ("call_1", "get_weather", {"city": "Paris"})
        assert first.usage.input_tokens_details.cached_tokens == 4
        assert first.usage.output_tokens_details.reasoning_tokens == 2
        second = api.responses.create(model="server/math", tools=[WEATHER_TOOL], previous_response_id=first.id,
                                      input=[{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}])
    assert second.output_text == "It is sunny in Paris." and second.previous_response_id == first.id
    chat = service.requests[0]
    assert chat.tools[0].function.name == "get_weather" and chat.tools[0].function.strict is True
    assert chat.tool_choice == "auto" and chat.parallel_tool_calls is False
    messages = [m.model_dump(exclude_none=True) for m in service.requests[1].messages]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == "call_1" and messages[2] == {"role": "tool", "tool_call_id": "call_1",
                                                                               "content": "sunny"}


def test_function_call_items_sent_back_whole_make_the_same_chat_history():
    """As the Agents SDK sends a turn: its own history, reasoning and function calls included."""
    service = ScriptedService([Outcome("done", "stop", trace())])
    with served(create_api(service)) as url:
        client(url).responses.create(model="colm", store=False, input=[
            {"role": "user", "content": "Weather?"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "thinking"}]},
            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
             "arguments": "{}", "status": "completed"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}])
    messages = [m.model_dump(exclude_none=True) for m in service.requests[0].messages]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["content"] == "Let me look." and messages[1]["tool_calls"][0]["id"] == "call_1"


@pytest.mark.parametrize(("text", "expected"), [
    ({"format": {"type": "json_schema", "name": "city", "strict": True,
                 "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}},
     {"type": "json_schema", "json_schema": {"name": "city", "strict": True,
                                             "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}}),
    ({"format": {"type": "json_object"}}, {"type": "json_object"}),
    ({"format": {"type": "text"}}, {"type": "text"}),
])
def test_text_format_maps_to_response_format(text, expected):
    service = ScriptedService([Outcome('{"name": "Paris"}', "stop", trace())])
    with served(create_api(service)) as url:
        resp = client(url).responses.create(model="colm-client", input="A city?", text=text)
    assert service.requests[0].response_format.model_dump(by_alias=True, exclude_none=True) == expected
    assert resp.text.format.type == text["format"]["type"]


def _events(url: str, **params) -> list:
    """The stream's events as sent (each validated by the SDK's event types, its SSE `event:`
    name checked against its type), and read once more through the SDK's own stream."""
    events = []
    with httpx.stream("POST", f"{url}/responses", json={**params, "stream": True}, timeout=30) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        for block in resp.read().decode().split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
            if lines:
                data = json.loads(lines["data"])
                event = EVENTS[data["type"]].model_validate(data)
                assert lines["event"] == event.type
                events.append(event)
    with client(url).responses.create(stream=True, **params) as stream:
        assert [e.type for e in stream] == [e.type for e in events]
    return events


def _assert_in_order(events: list) -> None:
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events[:2]] == ["response.created", "response.in_progress"]
    ids = {events[0].response.id}
    for e in events:
        if hasattr(e, "response"):
            ids.add(e.response.id)
    assert len(ids) == 1


def test_stream_progress_text_and_usage_in_openai_order():
    service = ScriptedService([[Progress("select", "asking math"), Progress("select", ", code"),
                                Progress("guide", "notes"), "Hello", " world", Outcome("Hello world", "stop", trace(9, 2))]])
    with served(create_api(service)) as url:
        events = _events(url, model="colm", input="Hi")
    _assert_in_order(events)
    assert [e.type for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
        "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    done = events[-1].response
    assert [o.type for o in done.output] == ["reasoning", "message"]
    assert [s.text for s in done.output[0].summary] == ["asking math, code", "notes"]
    assert done.output_text == "Hello world" and done.usage.input_tokens == 9 and done.usage.output_tokens == 2
    assert "usage" in done.model_extra["colm"]


def test_stream_tool_call_chunks_become_function_call_events():
    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> Chunk:
        choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return Chunk({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices,
                      **({"usage": usage} if usage else {})})

    service = ScriptedService([[
        chunk({"role": "assistant", "content": ""}),
        chunk({"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
        chunk({}, finish="tool_calls"),
        chunk({}, usage={"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}),
        Outcome("", "tool_calls", trace(), streamed_whole=True)]])
    with served(create_api(service)) as url:
        events = _events(url, model="server/math", input="Weather in Oslo?", tools=[WEATHER_TOOL])
    _assert_in_order(events)
    assert [e.type for e in events[2:]] == [
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    [call] = events[-1].response.output
    assert (call.type, call.call_id, call.name, call.arguments) == ("function_call", "call_9", "get_weather",
                                                                    '{"city": "Oslo"}')
    assert events[-1].response.usage.total_tokens == 28
    assert service.requests[0].stream_options.include_usage is True


def test_an_error_after_the_stream_began_is_an_error_event_and_response_failed():
    service = ScriptedService([["partial", UpstreamError("upstream answered 500 after 4 attempts")]])
    with served(create_api(service)) as url:
        events = _events(url, model="colm", input="Hi")
    _assert_in_order(events)
    assert [e.type for e in events[-3:]] == ["response.output_item.done", "error", "response.failed"]
    assert events[-1].response.status == "failed" and events[-1].response.error.code == "server_error"
    assert "500" in events[-2].message


def test_a_capped_answer_is_incomplete():
    service = ScriptedService([Outcome("cut sho", "length", trace())])
    with served(create_api(service)) as url:
        resp = client(url).responses.create(model="colm", input="Long story", max_output_tokens=16)
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"
    assert service.requests[0].max_completion_tokens == 16


# --- stored responses -------------------------------------------------------------------


def test_store_get_input_items_delete_and_previous_response_id():
    fake = FakeClient(["first answer", "second answer"])
    service = real_service(fake=fake)
    with served(create_api(service)) as url:
        api = client(url)
        first = api.responses.create(model="colm-client", input="Remember 42.", metadata={"k": "v"})
        assert api.responses.retrieve(first.id).output_text == "first answer"
        assert [i.type for i in api.responses.input_items.list(first.id).data] == ["message"]
        second = api.responses.create(model="colm-client", input="What number?", previous_response_id=first.id)
        assert second.output_text == "second answer" and first.metadata == {"k": "v"}
        api.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError) as err:
            api.responses.retrieve(first.id)
        assert err.value.body["param"] == "response_id"
        with pytest.raises(openai.NotFoundError) as err:
            api.responses.create(model="colm-client", input="again", previous_response_id=first.id)
        assert err.value.body["param"] == "previous_response_id"
        not_stored = api.responses.create(model="colm-client", input="forget me", store=False)
        with pytest.raises(openai.NotFoundError):
            api.responses.retrieve(not_stored.id)
    assert [m["content"] for m in fake.requests[1].messages] == ["Remember 42.", "first answer", "What number?"]


def test_a_key_sees_only_its_own_stored_responses():
    keys = [{"name": "alice", "key_sha256": hash_key("sk-alice")}, {"name": "bob", "key_sha256": hash_key("sk-bob")}]
    with served(create_api(real_service(auth={"keys": keys}))) as url:
        mine = client(url, "sk-alice").responses.create(model="colm-client", input="secret")
        assert client(url, "sk-alice").responses.retrieve(mine.id).id == mine.id
        for call in (lambda: client(url, "sk-bob").responses.retrieve(mine.id),
                     lambda: client(url, "sk-bob").responses.delete(mine.id),
                     lambda: client(url, "sk-bob").responses.create(model="colm-client", input="x",
                                                                   previous_response_id=mine.id)):
            with pytest.raises(openai.NotFoundError):
                call()


def test_a_conversation_continues_on_another_replica_over_one_sqlite_file(tmp_path):
    config = AccountingConfig(store="sqlite", path=tmp_path / "ledger.sqlite3")
    replicas = [ScriptedService([Outcome(answer, "stop", trace())],
                                responses=build_response_store(config, budget_store=SqliteStore(config.path)))
                for answer in ("one", "two")]
    assert all(isinstance(r.responses, SqliteResponses) for r in replicas)
    with served(create_api(replicas[0])) as url_a, served(create_api(replicas[1])) as url_b:
        first = client(url_a).responses.create(model="colm", input="Count with me.")
        second = client(url_b).responses.create(model="colm", input="Next?", previous_response_id=first.id)
        assert client(url_a).responses.retrieve(second.id).output_text == "two"
    messages = [m.model_dump(exclude_none=True) for m in replicas[1].requests[0].messages]
    assert messages == [{"role": "user", "content": "Count with me."}, {"role": "assistant", "content": "one"},
                        {"role": "user", "content": "Next?"}]


# --- refused and bad input ---------------------------------------------------------------

REFUSED = [
    ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools.0.type"),
    ({"background": True}, "background"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"include": ["message.output_text.logprobs"]}, "include"),
    ({"truncation": "auto"}, "truncation"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"max_tool_calls": 2}, "max_tool_calls"),
    ({"stream_options": {"include_obfuscation": True}}, "stream_options.include_obfuscation"),
    ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input.0.type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input.0.content.0.type"),
    ({"bogus": 1}, "bogus"),
    ({"temperature": 7}, "temperature"),
    ({"input": [{"role": "assistant", "content": "only me"}]}, "input"),
]


@pytest.mark.parametrize(("extra", "param"), REFUSED)
def test_refused_parameters_get_a_400_naming_them_and_the_service_keeps_serving(extra, param):
    with served(create_api(real_service())) as url:
        api = client(url)
        with pytest.raises(openai.BadRequestError) as err:
            api.responses.create(model="colm", **{"input": "hi", **extra}) if "bogus" not in extra else \
                api.responses.create(model="colm", input="hi", extra_body=extra)
        assert err.value.body["param"] == param and err.value.body["type"] == "invalid_request_error"
        assert api.responses.create(model="colm", input="hi").status == "completed"


def test_unknown_model_is_a_404():
    with served(create_api(real_service())) as url, pytest.raises(openai.NotFoundError):
        client(url).responses.create(model="gpt-17", input="hi")


def test_the_request_model_knows_every_sdk_parameter():
    assert SDK_PARAMS <= set(ResponsesRequest.model_fields)
