"""Request spans over OpenTelemetry: off until the standard OTEL_* variables turn them on.

Code on the request path opens spans with `span(name, **attributes)` and adds attributes as
it learns them (`s.set(tokens=...)`); nothing there depends on whether tracing is on.
Attribute names get the `colm.` prefix; None values are left out.

A trace crosses processes (the router's replica to a ServerProxy replica) as W3C
trace-context headers in a plain dict: `inject()` where the call leaves, `with
extract(carrier):` where it arrives. A streamed request outlives its route handler, so its
root is a `RequestSpan` that every step of the request runs under (`RequestSpan.task`).

On when OTEL_TRACES_EXPORTER names `otlp` (OTLP/HTTP, protobuf) or `console`, or, with it
unset, when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; off
with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. Each process sets itself up on its
first span, from its own environment: nothing happens at import.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

T = TypeVar("T")
PREFIX = "colm."
SERVICE_NAME = "colm-serve"
_PROPAGATOR = TraceContextTextMapPropagator()
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def exporters_from(env: Mapping[str, str]) -> list[str]:
    """The exporters the standard variables ask for; empty means tracing is off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not named:
        return ["otlp"] if any(env.get(v) for v in _ENDPOINTS) else []
    unknown = set(named) - {"otlp", "console", "none"}
    if unknown:
        raise ValueError(f"OTEL_TRACES_EXPORTER: unsupported exporter(s) {sorted(unknown)}; use otlp, console or none")
    return [n for n in named if n != "none"]


@dataclass
class _Setup:
    """This process's tracer, or None while tracing is off; set up on first use."""

    provider: TracerProvider | None = None
    tracer: trace.Tracer | None = None
    done: bool = False


_SETUP = _Setup()


def configure() -> None:
    """(Re)reads the OTEL_* environment; replaces, and flushes, any earlier setup."""
    names = exporters_from(os.environ)
    provider = None
    if names:
        resource = Resource.create()
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
        provider = TracerProvider(resource=resource)
        for name in names:
            provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    _install(provider)


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout and compression from OTEL_EXPORTER_OTLP_*


def setup() -> None:
    """Sets this process up from the environment unless it is already: replicas call it as
    they start, so a bad OTEL_* value fails the start, not a request."""
    if not _SETUP.done:
        configure()


def reset() -> None:
    """Flushes and forgets this process's setup; the next span reads the environment again."""
    _install(None)
    _SETUP.done = False


def _install(provider: TracerProvider | None) -> None:
    """Makes `provider` this process's; the one it replaces is shut down, so flushed."""
    if _SETUP.provider is not None:
        _SETUP.provider.shutdown()
    _SETUP.provider, _SETUP.done = provider, True
    _SETUP.tracer = provider.get_tracer("colm_serve") if provider else None


def _tracer() -> trace.Tracer | None:
    setup()
    return _SETUP.tracer


def flush(timeout_ms: int = 10_000) -> bool:
    """Sends every finished span now (tests, and before a process exits on purpose)."""
    return _SETUP.provider.force_flush(timeout_ms) if _SETUP.provider else True


@contextmanager
def use_exporter(exporter: SpanExporter) -> Iterator[None]:
    """Tests: inside the block every span goes to `exporter` at once; then the environment rules again."""
    provider = TracerProvider(resource=Resource({"service.name": SERVICE_NAME}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _install(provider)
    try:
        yield
    finally:
        reset()


class Span:
    """An open span: `set` adds attributes. With tracing off it records nothing."""

    def __init__(self, raw: trace.Span | None = None) -> None:
        self._raw = raw

    def set(self, **attributes: Any) -> None:
        if self._raw is not None:
            self._raw.set_attributes(_attributes(attributes))

    def fail(self, error: BaseException) -> None:
        """A cancelled step is not an error: it is marked `colm.cancelled`."""
        if self._raw is None:
            return
        if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
            self._raw.set_attribute(PREFIX + "cancelled", True)
            return
        self._raw.record_exception(error)
        self._raw.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"[:300]))


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span]:
    """A child of the current span (or a new trace's root) for the block; an exception leaving
    the block marks it failed."""
    tracer = _tracer()
    if tracer is None:
        yield Span()
        return
    with tracer.start_as_current_span(
        name, attributes=_attributes(attributes), record_exception=False, set_status_on_exception=False
    ) as raw:
        opened = Span(raw)
        try:
            yield opened
        except BaseException as exc:
            opened.fail(exc)
            raise


def current() -> Span:
    """The current span, to add attributes to a span some caller opened (the request's)."""
    raw = trace.get_current_span()
    return Span(raw if _tracer() is not None and raw.is_recording() else None)


def inject() -> dict[str, str]:
    """The current span as W3C trace-context headers, for a call that leaves this process
    (empty when tracing is off)."""
    carrier: dict[str, str] = {}
    if _tracer() is not None:
        _PROPAGATOR.inject(carrier)
    return carrier


@contextmanager
def extract(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Inside the block, spans are children of the caller's span that `carrier` names."""
    if not carrier or _tracer() is None:
        yield
        return
    token = otel_context.attach(_PROPAGATOR.extract(dict(carrier)))
    try:
        yield
    finally:
        otel_context.detach(token)


class RequestSpan(Span):
    """A request's root span, open from its route handler to its stream's last byte.

    A stream goes on after the handler returns, and the SSE keep-alive timer runs each step of
    it as a task of its own. So every step runs in this span's one Context (`task`): the spans
    they open are its children, and a span that one step of an event generator opens and a
    later step closes nests, and closes, as it should. `parent`: the client's own
    trace-context headers, if it sent any.
    """

    def __init__(self, name: str, *, parent: Mapping[str, str] | None = None, **attributes: Any) -> None:
        tracer = _tracer()
        raw = None
        if tracer is not None:
            remote = _PROPAGATOR.extract(dict(parent)) if parent else None
            raw = tracer.start_span(name, context=remote, attributes=_attributes(attributes))
        super().__init__(raw)
        self._ended = False
        self.context = contextvars.copy_context()
        if raw is not None:
            self.context.run(otel_context.attach, trace.set_span_in_context(raw))

    def task(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        return asyncio.create_task(coro, context=self.context)

    def end(self, error: BaseException | None = None) -> None:
        """Ends the span once (later calls do nothing); `error` marks it failed or cancelled."""
        if self._ended:
            return
        self._ended = True
        if error is not None:
            self.fail(error)
        if self._raw is not None:
            self._raw.end()


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """OpenTelemetry takes str, bool, int, float and lists of one of them."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple, set, frozenset)):
            value = [v if isinstance(v, str) else str(v) for v in value]
        elif not isinstance(value, (str, bool, int, float)):
            value = str(value)
        out[PREFIX + key] = value
    return out
