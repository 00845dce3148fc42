"""Refuses request bodies over the configured size before anything parses them (413).

A declared Content-Length over the limit is refused at once. A body without one (chunked
transfer encoding) is counted as it arrives and refused the moment it passes the limit, so a
client cannot skip the check by not declaring a length; what is under the limit is passed
on to the app unchanged.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colm_serve.errors import PayloadTooLarge, error_response


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit():
            if int(length) > self.max_bytes:
                await self._refuse(f"request body is {int(length)} bytes", scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        messages = await self._read_within_limit(receive)
        if messages is None:
            await self._refuse("request body is larger than that", scope, receive, send)
            return
        await self.app(scope, _replay(messages, receive), send)

    async def _read_within_limit(self, receive: Receive) -> list[Message] | None:
        """The body's messages, or None as soon as they pass the limit."""
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # the client went away; the app will see that
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return None
            if not message.get("more_body", False):
                return messages

    async def _refuse(self, what: str, scope: Scope, receive: Receive, send: Send) -> None:
        err = PayloadTooLarge(f"{what}; the limit is {self.max_bytes}", code="body_too_large")
        await error_response(err)(scope, receive, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
