"""Spans: off by default, on by the OTEL_* variables; a ServerProxy joins its caller's trace.

The proxy tests run a real ServerProxy over tests/upstream_sim.py (real HTTP, injected
faults), and read the spans from an in-memory exporter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from colm_serve import telemetry
from colm_serve.server_proxy.proxy import ServerProxy
from tests.server_proxy.conftest import make_call, server_config
from tests.upstream_sim import Fault, UpstreamSim


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    with telemetry.use_exporter(exporter):
        yield exporter


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def children(exporter: InMemorySpanExporter, parent: ReadableSpan) -> list[str]:
    return sorted(s.name for s in exporter.get_finished_spans() if s.parent and s.parent.span_id == parent.context.span_id)


# -- switching it on --------------------------------------------------------------------

ENVIRONMENTS = [
    ({}, []),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "console,otlp"}, ["console", "otlp"]),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, []),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, []),
    ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp"}, []),
    ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
]


@pytest.mark.parametrize(("env", "exporters"), ENVIRONMENTS)
def test_the_standard_variables_turn_tracing_on_and_off(env, exporters):
    assert telemetry.exporters_from(env) == exporters


def test_an_exporter_we_do_not_ship_is_refused_by_name():
    with pytest.raises(ValueError, match="zipkin"):
        telemetry.exporters_from({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_off_by_default_spans_record_nothing_and_carry_nothing(monkeypatch):
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(var, raising=False)
    telemetry.configure()
    with telemetry.span("colm.step", specialist="math") as s:
        s.set(tokens=3)
        assert telemetry.inject() == {}
    with telemetry.extract({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}):
        assert telemetry.inject() == {}


# -- spans ------------------------------------------------------------------------------


def test_spans_nest_and_carry_prefixed_attributes(spans):
    with telemetry.span("colm.request", model="colm") as root:
        with telemetry.span("colm.guidance", specialist="math", cached=False, note=None) as g:
            g.set(tokens=12, cost_usd=0.5, picked=["math", "code"])
        root.set(finish_reason="stop")
    guidance, request = named(spans, "colm.guidance")[0], named(spans, "colm.request")[0]
    assert guidance.parent.span_id == request.context.span_id
    assert guidance.context.trace_id == request.context.trace_id
    assert dict(guidance.attributes) == {"colm.specialist": "math", "colm.cached": False, "colm.tokens": 12,
                                         "colm.cost_usd": 0.5, "colm.picked": ("math", "code")}
    assert request.attributes["colm.finish_reason"] == "stop"


async def test_a_failed_step_is_an_error_and_a_cancelled_one_is_not(spans):
    with pytest.raises(RuntimeError):
        with telemetry.span("colm.summary"):
            raise RuntimeError("reference server down")

    async def slow() -> None:
        with telemetry.span("colm.round"):
            await asyncio.sleep(10)

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    failed, cancelled = named(spans, "colm.summary")[0], named(spans, "colm.round")[0]
    assert failed.status.status_code == StatusCode.ERROR and "reference server down" in failed.status.description
    assert [e.name for e in failed.events] == ["exception"]
    assert cancelled.status.status_code == StatusCode.UNSET and cancelled.attributes["colm.cancelled"] is True


def test_trace_context_crosses_a_boundary_as_plain_headers(spans):
    with telemetry.span("colm.guidance"):
        carrier = telemetry.inject()
    assert set(carrier) == {"traceparent"}
    with telemetry.extract(carrier), telemetry.span("proxy.chat"):
        pass
    guidance, proxy = named(spans, "colm.guidance")[0], named(spans, "proxy.chat")[0]
    assert proxy.parent.span_id == guidance.context.span_id and proxy.parent.is_remote


async def test_a_request_span_is_the_parent_of_every_step_run_under_it(spans):
    request = telemetry.RequestSpan("colm.request", model="colm")

    async def step(name: str) -> None:
        with telemetry.span(name):
            await asyncio.sleep(0)

    await request.task(step("colm.admission"))
    await request.task(step("colm.selection"))
    with telemetry.span("elsewhere"):
        pass
    request.end()
    request.end()  # once only
    root = named(spans, "colm.request")[0]
    assert children(spans, root) == ["colm.admission", "colm.selection"]
    assert named(spans, "elsewhere")[0].parent is None
    assert len(named(spans, "colm.request")) == 1


async def test_a_request_span_joins_the_callers_trace_when_it_sends_one(spans):
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    request = telemetry.RequestSpan("colm.request", parent={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    request.end()
    root = named(spans, "colm.request")[0]
    assert f"{root.context.trace_id:032x}" == trace_id and f"{root.parent.span_id:016x}" == parent_id


# -- the ServerProxy joins the caller's trace ------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[UpstreamSim]:
    with UpstreamSim() as server:
        yield server


@pytest.fixture
async def proxy(sim):
    sim.reset()
    built = ServerProxy(server_config(sim))
    yield built
    await built.aclose()


def caller_span() -> dict[str, str]:
    """A router-side span that has ended by the time the proxy runs: only the carrier links them."""
    with telemetry.span("colm.guidance"):
        carrier = telemetry.inject()
    return carrier


async def test_proxy_spans_join_the_callers_trace_with_queue_and_each_attempt(spans, sim, proxy):
    sim.set_faults(script=[Fault.error(500)])
    carrier = caller_span()
    reply = await proxy.chat(make_call("traced", trace_context=carrier, cache=False))
    assert reply.attempts == 2
    guidance, chat = named(spans, "colm.guidance")[0], named(spans, "proxy.chat")[0]
    assert chat.context.trace_id == guidance.context.trace_id and chat.parent.span_id == guidance.context.span_id
    assert children(spans, chat) == ["proxy.attempt", "proxy.attempt", "proxy.queue"]
    first, second = sorted(named(spans, "proxy.attempt"), key=lambda s: s.attributes["colm.attempt"])
    assert first.status.status_code == StatusCode.ERROR and "500" in first.status.description
    assert second.status.status_code == StatusCode.UNSET
    assert chat.attributes["colm.retries"] == 1 and chat.attributes["colm.cached"] is False
    assert chat.attributes["colm.completion_tokens"] == reply.completion_tokens > 0
    assert chat.attributes["colm.server"] == "sim" and chat.attributes["colm.cost_usd"] == reply.cost_usd


async def test_a_cached_answer_is_a_span_without_upstream_attempts(spans, proxy):
    await proxy.chat(make_call("twice"))
    spans.clear()
    carrier = caller_span()
    reply = await proxy.chat(make_call("twice", trace_context=carrier))
    chat = named(spans, "proxy.chat")[0]
    assert reply.cached and chat.attributes["colm.cached"] is True and chat.attributes["colm.cost_usd"] == 0
    assert children(spans, chat) == []


async def test_coalesced_callers_each_get_a_span_and_one_set_of_attempts(spans, sim, proxy):
    sim.set_faults(latency_s=0.2)
    calls = [make_call("together", trace_context=caller_span(), cache=False) for _ in range(3)]
    replies = await asyncio.gather(*(proxy.chat(c) for c in calls))
    assert sum(r.coalesced for r in replies) == 2 and sim.stats.requests == 1
    chats = named(spans, "proxy.chat")
    assert sorted(s.attributes["colm.coalesced"] for s in chats) == [False, True, True]
    assert len({s.context.trace_id for s in chats}) == 3 and len(named(spans, "proxy.attempt")) == 1


async def test_a_streamed_call_is_one_span_over_the_whole_stream(spans, sim, proxy):
    sim.set_faults(script=[Fault.error(503)], token_latency_s=0.01)
    carrier = caller_span()
    deltas = [d async for d in proxy.chat_stream(make_call("stream traced", trace_context=carrier))]
    stream = named(spans, "proxy.chat_stream")[0]
    assert stream.parent.span_id == named(spans, "colm.guidance")[0].context.span_id
    assert children(spans, stream) == ["proxy.attempt", "proxy.attempt", "proxy.queue"]
    assert stream.attributes["colm.completion_tokens"] == deltas[-1].completion_tokens > 0
    assert stream.attributes["colm.retries"] == 1 and stream.end_time >= max(s.end_time for s in named(spans, "proxy.attempt"))
