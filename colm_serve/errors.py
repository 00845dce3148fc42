"""Domain exceptions and the one place that turns any exception into an OpenAI-format error.

Body shape: {"error": {"message", "type", "param", "code"}}. Exceptions cross Ray actor
boundaries, so they pickle with all their fields (`__reduce__`), and Ray's wrapper
(RayTaskError) is unwrapped back to the domain error before mapping.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from colm_serve.protocol.usage import Usage

logger = logging.getLogger("colm_serve")


class ColmError(Exception):
    status: int = 500
    type: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        billed: Usage | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}
        self.billed = billed  # upstream spend the failed work had already caused

    def __reduce__(self):
        return (_rebuild, (type(self), self.message, self.param, self.code, self.headers, self.billed))

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _rebuild(cls, message, param, code, headers, billed=None):
    err = cls(message, param=param, code=code, headers=headers)
    err.billed = billed
    return err


class InvalidRequest(ColmError):
    status, type = 400, "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    def __init__(self, message: str, *, param: str | None = "messages", **kw: Any) -> None:
        kw.setdefault("code", "context_length_exceeded")
        super().__init__(message, param=param, **kw)


class AuthenticationError(ColmError):
    status, type = 401, "authentication_error"


class NotFound(ColmError):
    status, type = 404, "invalid_request_error"


class PayloadTooLarge(ColmError):
    status, type = 413, "invalid_request_error"


class RateLimited(ColmError):
    """Admission refused: a queue is full or a per-key budget is spent."""

    status, type = 429, "rate_limit_error"

    def __init__(self, message: str, *, retry_after_s: float = 1.0, **kw: Any) -> None:
        headers = dict(kw.pop("headers", None) or {})
        headers.setdefault("Retry-After", str(max(1, int(round(retry_after_s)))))
        super().__init__(message, headers=headers, **kw)


class UpstreamError(ColmError):
    """An upstream server failed after our retries, or answered a non-retryable error."""

    status, type = 502, "upstream_error"


class ServiceUnavailable(ColmError):
    status, type = 503, "service_unavailable_error"


class DeadlineExceeded(ColmError):
    status, type = 504, "timeout_error"


def unwrap(exc: BaseException) -> BaseException:
    """Follow Ray's wrappers (RayTaskError.cause) down to the exception that was raised."""
    seen = 0
    while seen < 8 and not isinstance(exc, ColmError):
        cause = getattr(exc, "cause", None)
        if not isinstance(cause, BaseException):
            break
        exc, seen = cause, seen + 1
    return exc


def from_replica(exc: Exception) -> Exception:
    """A deployment handle's failure as the caller should see it.

    Ray wraps a replica's exception (RayTaskError): the domain error inside comes back out.
    A replica that died mid-request (ActorDiedError, ActorUnavailableError: both
    RayActorErrors, matched by name so this module needs no Ray) is being replaced by Serve,
    so the caller gets a 503 it may retry; a full Serve queue (BackPressureError) is a 429.
    """
    inner = unwrap(exc)
    if isinstance(inner, ColmError):
        return inner
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "BackPressureError" in names:  # Serve's queue at this caller is full: the deployment is saturated
        return RateLimited("the service is saturated; retry shortly", retry_after_s=2, code="backpressure")
    if "RayActorError" in names:
        return ServiceUnavailable(
            f"a replica serving this request failed ({type(exc).__name__}); retry shortly",
            code="replica_failed",
            headers={"Retry-After": "10"},
        )
    return exc


def as_colm_error(exc: BaseException) -> ColmError:
    exc = unwrap(exc)
    if isinstance(exc, ColmError):
        return exc
    if isinstance(exc, TimeoutError):
        return DeadlineExceeded("the request did not finish before its deadline")
    logger.exception("unhandled error", exc_info=exc)
    return ColmError(f"internal error: {type(exc).__name__}", code="internal_error")


def error_response(exc: BaseException) -> JSONResponse:
    err = as_colm_error(exc)
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def _validation_error(exc: RequestValidationError) -> InvalidRequest:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return InvalidRequest(f"request body is not valid JSON: {first.get('msg', '')}", code="invalid_json")
    param = ".".join(loc) or None
    message = f"{param}: {first.get('msg', 'invalid value')}" if param else first.get("msg", "invalid request")
    return InvalidRequest(message, param=param, code="invalid_value")


def served_routes(app: Any) -> list[str]:
    """"POST /v1/chat/completions", ...: the app's own API routes, as registered, so the list stays true."""
    return [f"{method} {route.path}" for route in app.routes if isinstance(route, APIRoute) and route.include_in_schema
            for method in sorted(route.methods - {"HEAD", "OPTIONS"})]


def _unknown_route(request: Request) -> str:
    """The router's 404 for a path it does not serve (the legacy /v1/completions among them)."""
    return f"{request.method} {request.url.path} is not served here; routes: {', '.join(served_routes(request.app))}"


def install_error_handlers(app: FastAPI) -> None:
    """Every error an ingress can produce leaves it in OpenAI format, through here."""

    @app.exception_handler(RequestValidationError)
    async def _on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cls = {404: NotFound, 405: InvalidRequest, 413: PayloadTooLarge}.get(exc.status_code, InvalidRequest)
        err = cls(_unknown_route(request) if exc.status_code == 404 and exc.detail == "Not Found" else str(exc.detail))
        err.status = exc.status_code
        return error_response(err)

    @app.exception_handler(json.JSONDecodeError)
    async def _on_json(_: Request, exc: json.JSONDecodeError) -> JSONResponse:
        return error_response(InvalidRequest(f"request body is not valid JSON: {exc}", code="invalid_json"))

    @app.exception_handler(ColmError)
    async def _on_domain(_: Request, exc: ColmError) -> JSONResponse:
        return error_response(exc)

    # Starlette sends this handler's response and then re-raises, so unknown errors are logged.
    @app.exception_handler(Exception)
    async def _on_any(_: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)
