"""Refuses request bodies over the configured size before anything parses them (413)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from colm_serve.errors import PayloadTooLarge, error_response


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_bytes:
                err = PayloadTooLarge(f"request body is {int(length)} bytes; the limit is {self.max_bytes}", code="body_too_large")
                await error_response(err)(scope, receive, send)
                return
        await self.app(scope, receive, send)
