"""The Response object of the Responses API: a chat Outcome as output items, usage and status,
and the record a stored response keeps for `previous_response_id`."""

from __future__ import annotations

import time
from typing import Any

from colm_serve.accounting.conversations import StoredResponse
from colm_serve.api import responses
from colm_serve.errors import as_colm_error
from colm_serve.outcome import Outcome, first_choice
from colm_serve.protocol.caller import Caller
from colm_serve.protocol.responses import ResponsesRequest, new_id

# Chat finish reasons that leave a response incomplete, and the reason OpenAI gives for each.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
# Error codes a Response's `error` may carry (the SDK's ResponseError.code); anything else is a server_error.
RESPONSE_ERROR_CODES = {429: "rate_limit_exceeded"}


class Draft:
    """One response being made: its id, the request's settings it echoes, and what to store."""

    def __init__(self, req: ResponsesRequest, *, caller: Caller, history: list[dict[str, Any]],
                 items: list[dict[str, Any]], ttl_s: float) -> None:
        self.req, self.caller, self.history, self.items, self.ttl_s = req, caller, history, items, ttl_s
        self.id = new_id("resp")
        self.created_at = int(time.time())

    def skeleton(self, status: str = "in_progress") -> dict[str, Any]:
        req = self.req
        text_format = req.text.format.echo() if req.text and req.text.format else {"type": "text"}
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "model": req.model, "output": [], "error": None, "incomplete_details": None,
            "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "metadata": req.metadata or {}, "parallel_tool_calls": req.parallel_tool_calls is not False,
            "previous_response_id": req.previous_response_id, "store": req.stored,
            "temperature": req.temperature, "top_p": req.top_p,
            "text": {"format": text_format, **({"verbosity": req.text.verbosity} if req.text and req.text.verbosity else {})},
            "tool_choice": req.tool_choice or "auto", "tools": [t.model_dump() for t in req.function_tools()],
            "truncation": "disabled", "user": req.user, "safety_identifier": req.safety_identifier, "usage": None,
        }

    def finished(self, output: list[dict[str, Any]], outcome: Outcome, *,
                 usage: dict[str, Any] | None = None, finish_reason: str | None = None) -> dict[str, Any]:
        """The whole Response for `outcome`: completed, or incomplete when the answer was cut."""
        reason = INCOMPLETE.get(finish_reason or outcome.finish_reason or "")
        response = self.skeleton("incomplete" if reason else "completed")
        response.update(output=output, usage=response_usage(usage or body_usage(outcome)),
                        incomplete_details={"reason": reason} if reason else None,
                        completed_at=None if reason else int(time.time()))
        response["colm"] = responses.colm_field(outcome.trace, full=bool(self.req.colm and self.req.colm.trace))
        return response

    def failed(self, output: list[dict[str, Any]], exc: BaseException) -> dict[str, Any]:
        err = as_colm_error(exc)
        response = self.skeleton("failed")
        response.update(output=output, error={"code": RESPONSE_ERROR_CODES.get(err.status, "server_error"),
                                              "message": err.message})
        return response

    def record(self, response: dict[str, Any]) -> StoredResponse:
        return StoredResponse(id=self.id, owner=self.caller.label, response=response,
                              history=[*self.history, *self.items], input_start=len(self.history),
                              expires_at=time.time() + self.ttl_s)


def body_usage(outcome: Outcome) -> dict[str, Any]:
    """The upstream's own usage when the answer came as its body, else every token the trace counted."""
    if outcome.body and outcome.body.get("usage"):
        return outcome.body["usage"]
    return responses.openai_usage(outcome.trace).model_dump(exclude_none=True)


def response_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Chat usage in the Responses API's names."""
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    prompt_details = usage.get("prompt_tokens_details") or {}
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": prompt_details.get("cached_tokens") or 0,
                                 "cache_write_tokens": prompt_details.get("cache_write_tokens") or 0},
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0},
        "total_tokens": usage.get("total_tokens") or prompt + completion,
    }


def outcome_items(outcome: Outcome) -> list[dict[str, Any]]:
    """A non-streamed answer's output items: the upstream's reasoning, if any; the message (left
    out when the turn is only tool calls); a function_call item per tool call."""
    message = first_choice(outcome.body).get("message") or {} if outcome.body else {}
    status = "incomplete" if outcome.finish_reason in INCOMPLETE else "completed"
    calls = message.get("tool_calls") or []
    text = message.get("content") if outcome.body else outcome.answer
    items = []
    if reasoning := message.get("reasoning_content") or message.get("reasoning"):
        items.append(reasoning_item(new_id("rs"), [reasoning]))
    if text or message.get("refusal") or not calls:
        items.append(message_item(new_id("msg"), text or "", refusal=message.get("refusal"), status=status))
    items += [function_call_item(new_id("fc"), call, status="completed") for call in calls]
    return items


def message_item(item_id: str, text: str, *, refusal: str | None = None, status: str) -> dict[str, Any]:
    content = [output_text(text)] if text or not refusal else []
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_item(item_id: str, summaries: list[str]) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": s} for s in summaries]}


def function_call_item(item_id: str, call: dict[str, Any], *, status: str) -> dict[str, Any]:
    function = call.get("function") or {}
    return {"id": item_id, "type": "function_call", "call_id": call.get("id") or new_id("call"),
            "name": function.get("name") or "", "arguments": function.get("arguments") or "", "status": status}
