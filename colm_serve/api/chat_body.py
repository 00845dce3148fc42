"""The chat request's body, validated straight from its bytes.

Pydantic validates the raw JSON in one step, where FastAPI's body parameter would decode it
into Python objects, validate those and solve the route's dependencies on every request: on
the pass-through path that work is a large share of the router's CPU per request. A bad body
raises FastAPI's RequestValidationError (its `loc` under "body"), so it maps to the same 400
as any other validation error. The OpenAPI document describes the body and the Authorization
header: the schema fuzzer and client generators read it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from colm_serve.errors import InvalidRequest
from colm_serve.protocol.openai import ChatCompletionRequest

T = TypeVar("T")
SCHEMA_REF = "#/components/schemas/{model}"
OPENAPI = {
    "parameters": [{"name": "authorization", "in": "header", "required": False,
                    "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Authorization"}}],
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": SCHEMA_REF.format(model=ChatCompletionRequest.__name__)}}}},
}


async def chat_request(request: Request) -> ChatCompletionRequest:
    """The validated body; a body not sent as JSON is refused before it is read."""
    return await json_body(request, ChatCompletionRequest.from_json)


async def json_body(request: Request, parse: Callable[[bytes], T]) -> T:
    """`parse` of the body's bytes, its validation errors as FastAPI's (so the same 400)."""
    content_type = request.headers.get("content-type")
    if content_type and not _is_json(content_type):
        raise InvalidRequest(f"the body must be JSON, sent with Content-Type: application/json (got {content_type!r})",
                             param=None, code="invalid_content_type")
    raw = await request.body()
    try:
        return parse(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=raw) from None


def _is_json(content_type: str) -> bool:
    """As FastAPI judges a JSON body: application/json or any application/*+json."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def document_chat_request(app: FastAPI) -> None:
    """Adds the body's schemas to the app's OpenAPI components, which FastAPI only collects
    from typed parameters."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            body = ChatCompletionRequest.model_json_schema(ref_template=SCHEMA_REF)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in {**body.pop("$defs", {}), ChatCompletionRequest.__name__: body}.items():
                components.setdefault(name, definition)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
