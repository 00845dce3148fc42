"""The Responses API's event stream: a chat stream's events (text, Progress, Chunks, the
Outcome) as response.* events in OpenAI's order, each with its `sequence_number`."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from colm_serve import telemetry
from colm_serve.api import responses
from colm_serve.api.response_object import INCOMPLETE, Draft, function_call_item, message_item, output_text, reasoning_item
from colm_serve.errors import as_colm_error
from colm_serve.outcome import Chunk, Outcome, Progress, first_choice
from colm_serve.protocol.responses import new_id

logger = logging.getLogger("colm_serve.api")


class EventWriter:
    """Turns chat events into Responses events, one output item open at a time: an event of
    another kind (text after steps, a tool call after text) closes the open item and opens the
    next, so any interleaving still streams in OpenAI's order."""

    def __init__(self, draft: Draft, *, progress: bool) -> None:
        self.draft = draft
        self.progress = progress
        self.seq = 0
        self.output: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None  # the open item: its kind, index, item and text so far
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None

    def event(self, kind: str, **fields: Any) -> str:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n"

    def start(self) -> list[str]:
        response = self.draft.skeleton()
        return [self.event("response.created", response=response), self.event("response.in_progress", response=response)]

    def on(self, event: str | Progress | Chunk) -> list[str]:
        if isinstance(event, Progress):
            return self.reasoning(event.step, event.text) if self.progress and event.text else []
        if isinstance(event, Chunk):
            return self.chunk(event.body)
        return self.text(event) if event else []

    def chunk(self, body: dict[str, Any]) -> list[str]:
        self.usage = body.get("usage") or self.usage
        choice = first_choice(body)
        delta = choice.get("delta") or {}
        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        out = []
        if reasoning := delta.get("reasoning_content") or delta.get("reasoning"):
            out += self.reasoning("reasoning", reasoning)
        if delta.get("content"):
            out += self.text(delta["content"])
        for call in delta.get("tool_calls") or ():
            out += self.tool_call(call)
        return out

    def text(self, piece: str) -> list[str]:
        out = self._ensure("message")
        item = self.open
        item["text"] += piece
        out.append(self.event("response.output_text.delta", item_id=item["id"], output_index=item["index"],
                              content_index=0, delta=piece, logprobs=[]))
        return out

    def reasoning(self, step: str, piece: str) -> list[str]:
        out = self._ensure("reasoning")
        item = self.open
        if item["step"] != step:  # each step is a summary part of its own
            out += self._close_summary_part()
            item["step"] = step
            item["parts"].append("")
            out.append(self.event("response.reasoning_summary_part.added", item_id=item["id"], output_index=item["index"],
                                  summary_index=len(item["parts"]) - 1, part={"type": "summary_text", "text": ""}))
        item["parts"][-1] += piece
        out.append(self.event("response.reasoning_summary_text.delta", item_id=item["id"], output_index=item["index"],
                              summary_index=len(item["parts"]) - 1, delta=piece))
        return out

    def tool_call(self, delta: dict[str, Any]) -> list[str]:
        index, function = delta.get("index", 0), delta.get("function") or {}
        out = []
        if not (self.open and self.open["kind"] == "function_call" and self.open["call_index"] == index):
            out += self.close()
            item = function_call_item(new_id("fc"), {"id": delta.get("id"), "function": {"name": function.get("name")}},
                                      status="in_progress")
            self.open = {"kind": "function_call", "id": item["id"], "index": len(self.output), "call_index": index,
                         "item": item, "text": ""}
            self.output.append(item)
            out.append(self.event("response.output_item.added", output_index=self.open["index"], item=item))
        elif function.get("name"):
            self.open["item"]["name"] += function["name"]
        if piece := function.get("arguments"):
            self.open["text"] += piece
            out.append(self.event("response.function_call_arguments.delta", item_id=self.open["id"],
                                  output_index=self.open["index"], delta=piece))
        return out

    def close(self) -> list[str]:
        """Closes the open item, if any, with its done events."""
        item, self.open = self.open, None
        if item is None:
            return []
        status = "incomplete" if self.finish_reason in INCOMPLETE else "completed"
        at = {"item_id": item["id"], "output_index": item["index"]}
        out = []
        if item["kind"] == "message":
            done = message_item(item["id"], item["text"], status=status)
            out += [self.event("response.output_text.done", **at, content_index=0, text=item["text"], logprobs=[]),
                    self.event("response.content_part.done", **at, content_index=0, part=output_text(item["text"]))]
        elif item["kind"] == "reasoning":
            self.open = item
            out += self._close_summary_part()
            self.open = None
            done = reasoning_item(item["id"], item["parts"])
        else:
            done = {**item["item"], "arguments": item["text"], "status": "completed"}
            out.append(self.event("response.function_call_arguments.done", **at, name=done["name"],
                                  arguments=item["text"]))
        self.output[item["index"]] = done
        out.append(self.event("response.output_item.done", output_index=item["index"], item=done))
        return out

    def finish(self, outcome: Outcome) -> tuple[dict[str, Any], list[str]]:
        """The finished Response and the events that close the stream but the last."""
        self.finish_reason = self.finish_reason or outcome.finish_reason
        out = self.close()
        response = self.draft.finished(self.output, outcome, usage=self.usage, finish_reason=self.finish_reason)
        return response, out

    def last(self, response: dict[str, Any]) -> str:
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return self.event(kind, response=response)

    def fail(self, exc: BaseException) -> tuple[dict[str, Any], list[str]]:
        out = self.close()
        response = self.draft.failed(self.output, exc)
        err = as_colm_error(exc)
        out.append(self.event("error", code=err.code or err.type, message=err.message, param=err.param))
        return response, out

    def _ensure(self, kind: str) -> list[str]:
        """Opens an item of `kind` unless one is open; returns the events that did it."""
        if self.open and self.open["kind"] == kind:
            return []
        out = self.close()
        item_id = new_id("msg" if kind == "message" else "rs")
        index = len(self.output)
        if kind == "message":
            item = {"id": item_id, "type": "message", "role": "assistant", "status": "in_progress", "content": []}
            self.output.append(item)
            out += [self.event("response.output_item.added", output_index=index, item=item),
                    self.event("response.content_part.added", item_id=item_id, output_index=index, content_index=0,
                               part=output_text(""))]
            self.open = {"kind": kind, "id": item_id, "index": index, "text": ""}
        else:
            item = reasoning_item(item_id, [])
            self.output.append(item)
            out.append(self.event("response.output_item.added", output_index=index, item=item))
            self.open = {"kind": kind, "id": item_id, "index": index, "step": None, "parts": []}
        return out

    def _close_summary_part(self) -> list[str]:
        item = self.open
        if not item["parts"] or item["step"] is None:
            return []
        at = {"item_id": item["id"], "output_index": item["index"], "summary_index": len(item["parts"]) - 1}
        text = item["parts"][-1]
        return [self.event("response.reasoning_summary_text.done", **at, text=text),
                self.event("response.reasoning_summary_part.done", **at, part={"type": "summary_text", "text": text})]


async def stream_events(draft: Draft, events: AsyncIterator, *, store, keepalive_s: float,
                        span: telemetry.RequestSpan) -> AsyncIterator[str]:
    """The SSE body. The response is stored before its last event goes out, so a client may
    continue from it as soon as it has seen it end. A failure after the start is sent as an
    `error` event and `response.failed` (the HTTP status was sent long before)."""
    writer = EventWriter(draft, progress=draft.req.colm.progress if draft.req.colm else True)
    failure: BaseException | None = None
    try:
        for text in writer.start():
            yield text
        try:
            async with aclosing(responses.paced(events, keepalive_s=keepalive_s, run=span.task)) as paced:
                async for event in paced:
                    if event is None:
                        yield responses.KEEPALIVE
                    elif isinstance(event, Outcome):
                        span.set(**responses.span_attributes(event))
                        response, out = writer.finish(event)
                        for text in out:
                            yield text
                        if store is not None:
                            await store.put(draft.record(response))
                        yield writer.last(response)
                    else:
                        for text in writer.on(event):
                            yield text
        except Exception as exc:
            failure = exc
            response, out = writer.fail(exc)
            for text in out:
                yield text
            if store is not None:
                try:
                    await store.put(draft.record(response))
                except Exception:  # the failure being reported matters more than the record of it
                    logger.exception("could not store failed response %s", draft.id)
            yield writer.event("response.failed", response=response)
    except BaseException as exc:  # the client left: the span says so, and the exception goes on
        failure = exc
        raise
    finally:
        span.end(failure)
