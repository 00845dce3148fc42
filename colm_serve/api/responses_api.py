"""The OpenAI Responses API over the chat path: POST /v1/responses, GET and DELETE
/v1/responses/{id}, GET /v1/responses/{id}/input_items.

A request becomes one chat request (`protocol.responses`), which `RouterService.chat` serves
like any other (auth, budgets, strategies, accounting). Its result becomes a Response object,
or for a stream the Responses events in OpenAI's order, each with its `sequence_number`:
response.created, response.in_progress, then per output item output_item.added, its parts and
deltas, output_item.done, and last response.completed (or response.incomplete when the answer
hit its cap, or error + response.failed when the work failed after the stream began). `colm`'s
collaboration steps stream as a `reasoning` item's summary, as chat streams them as
`reasoning_content`; tool-call deltas stream as `function_call` items.

A stored response (`store`, true by default) keeps the conversation for `previous_response_id`
in `service.responses`, the ledger's backend, so the next turn may land on any replica. It
belongs to its caller's label: other callers get the same 404 as for an unknown id.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import Response, StreamingResponse

from colm_serve import telemetry
from colm_serve.accounting.conversations import StoredResponse
from colm_serve.api import chat_body, responses
from colm_serve.api.auth import Authenticator
from colm_serve.api.request_span import caller_tags, traced
from colm_serve.api.response_events import stream_events
from colm_serve.api.response_object import Draft, outcome_items
from colm_serve.errors import NotFound
from colm_serve.outcome import Outcome
from colm_serve.protocol.caller import Caller
from colm_serve.protocol.responses import ResponsesRequest

if TYPE_CHECKING:
    from colm_serve.service import RouterService

logger = logging.getLogger("colm_serve.api")
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def install(app: FastAPI, service: "RouterService", auth: Authenticator) -> None:
    """Adds the Responses routes to the router's app."""
    store = service.responses
    ttl_s = service.args.accounting.responses_ttl_s
    keepalive_s = service.args.router.keepalive_s

    @app.post("/v1/responses")
    async def create_response(request: Request):
        body = await chat_body.json_body(request, ResponsesRequest.model_validate_json)
        caller = auth.identify(request.headers.get("authorization"))
        history: list[dict[str, Any]] = []
        if body.previous_response_id:
            prior = await store.get(body.previous_response_id, owner=caller.label, now=time.time())
            if prior is None:
                raise NotFound(f"Previous response with id '{body.previous_response_id}' not found.",
                               param="previous_response_id", code="previous_response_not_found")
            history = prior.conversation()
        items = body.input_items()
        chat = body.to_chat([*history, *items])
        draft = Draft(body, caller=caller, history=history, items=items, ttl_s=ttl_s)
        span = telemetry.RequestSpan("colm.request", parent=request.headers, model=body.model, stream=body.stream,
                                     strategy=chat.options().strategy, api="responses", client=caller.label,
                                     **caller_tags(chat))
        result = await traced(span, service.chat(chat, caller=caller))
        if isinstance(result, Outcome):
            response = draft.finished(outcome_items(result), result)
            if body.stored:
                await store.put(draft.record(response))
            return Response(json.dumps(response), media_type="application/json", headers=responses.headers(result))
        stream = stream_events(draft, result, store=store if body.stored else None, keepalive_s=keepalive_s, span=span)
        return StreamingResponse(stream, media_type="text/event-stream", headers=STREAM_HEADERS)

    @app.get("/v1/responses/{response_id}")
    async def get_response(response_id: str, authorization: str | None = Header(None)) -> Response:
        record = await _stored(response_id, auth.identify(authorization))
        return Response(json.dumps(record.response), media_type="application/json")

    @app.get("/v1/responses/{response_id}/input_items")
    async def input_items(response_id: str, authorization: str | None = Header(None)) -> dict:
        items = (await _stored(response_id, auth.identify(authorization))).input_items()[::-1]  # newest first, as OpenAI
        return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                "last_id": items[-1]["id"] if items else None, "has_more": False}

    @app.delete("/v1/responses/{response_id}")
    async def delete_response(response_id: str, authorization: str | None = Header(None)) -> dict:
        if not await store.delete(response_id, owner=auth.identify(authorization).label):
            raise _not_found(response_id)
        return {"id": response_id, "object": "response", "deleted": True}

    async def _stored(response_id: str, caller: Caller) -> StoredResponse:
        record = await store.get(response_id, owner=caller.label, now=time.time())
        if record is None:
            raise _not_found(response_id)
        return record


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id", code="not_found")
