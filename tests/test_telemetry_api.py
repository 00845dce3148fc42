"""A request is one span tree, from the API layer through the ServerProxies, and it reaches a
real OTLP/HTTP endpoint when OTEL_EXPORTER_OTLP_ENDPOINT points at one.

The real FastAPI app over real ServerProxies that talk HTTP to tests/upstream_sim.py, with the
fake client model; spans from an in-memory exporter, or from an OTLP receiver this test runs.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from colm_serve import telemetry
from colm_serve.api.routes import create_api
from colm_serve.server_proxy.proxy import ServerProxy
from tests.fakes import FakeClient, app_args
from tests.reliability.conftest import ProxyUpstreams, router_service
from tests.test_telemetry import named
from tests.upstream_sim import UpstreamSim

ASK = {"model": "colm", "messages": [{"role": "user", "content": "How do I reverse a list in Python?"}],
       "colm": {"selector": "all", "top_k": 2, "iterations": 0}}
STEPS = {"colm.admission", "colm.selection", "colm.guidance", "colm.summary", "colm.round"}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    with telemetry.use_exporter(exporter):
        yield exporter


@pytest.fixture(scope="module")
def sim() -> Iterator[UpstreamSim]:
    with UpstreamSim(models=["m-math", "m-conv", "m-code", "m-eye"]) as server:
        yield server


@pytest.fixture
async def http(sim):
    sim.reset()
    server = {"base_url": sim.url, "timeout_s": 5}
    args = app_args(servers=[{"name": "a", **server}, {"name": "b", **server}])
    ups = ProxyUpstreams({s.name: ServerProxy(s) for s in args.servers})
    app = create_api(router_service(args, upstreams=ups, client=FakeClient()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router", timeout=30) as client:
        yield client
    await ups.aclose()


def one_tree(finished: list[ReadableSpan]) -> ReadableSpan:
    """The request's root; asserts every span is in its trace and hangs from it."""
    by_id = {s.context.span_id: s for s in finished}
    roots = [s for s in finished if s.parent is None]
    assert [r.name for r in roots] == ["colm.request"], [(s.name, s.parent) for s in finished]
    root = roots[0]
    for s in finished:
        assert s.context.trace_id == root.context.trace_id, s.name
        node = s
        while node.parent is not None:
            assert node.parent.span_id in by_id, f"{s.name}: its parent {node.parent.span_id:x} was not exported"
            node = by_id[node.parent.span_id]
        assert node is root
    return root


async def test_a_request_is_one_tree_down_to_each_upstream_attempt(spans, http, sim):
    resp = await http.post("/v1/chat/completions", json=ASK)
    assert resp.status_code == 200
    root = one_tree(spans.get_finished_spans())
    assert root.attributes["colm.model"] == "colm" and root.attributes["colm.stream"] is False
    assert root.attributes["colm.client"] == "anonymous"
    assert root.attributes["colm.server_tokens"] == resp.json()["colm"]["usage"]["server_tokens"] > 0
    chats = named(spans, "proxy.chat")
    assert len(chats) == sim.stats.requests == len(named(spans, "proxy.attempt")) > 0


async def test_a_streamed_request_span_covers_the_whole_stream(spans, http):
    async with http.stream("POST", "/v1/chat/completions", json={**ASK, "stream": True}) as resp:
        lines = [line async for line in resp.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    finished = spans.get_finished_spans()
    root = one_tree(finished)
    assert root.attributes["colm.stream"] is True and root.attributes["colm.finish_reason"] == "stop"
    assert root.end_time >= max(s.end_time for s in finished)


async def test_the_request_joins_the_trace_its_client_sends(spans, http):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    await http.post("/v1/chat/completions", json=ASK, headers=headers)
    assert {f"{s.context.trace_id:032x}" for s in spans.get_finished_spans()} == {trace_id}


async def test_a_refused_request_is_an_error_span(spans, http):
    resp = await http.post("/v1/chat/completions", json={**ASK, "stream": True, "colm": {"selector": "nope"}})
    assert resp.status_code == 400
    root = named(spans, "colm.request")[0]
    assert root.status.status_code == StatusCode.ERROR and "nope" in root.status.description


async def test_the_collaboration_steps_are_spans_and_each_upstream_call_hangs_from_its_step(spans, http):
    """The spans service.py and collab/ open: admission, selection, each guidance call, the
    summary and each client round; every upstream call hangs from the step that made it."""
    await http.post("/v1/chat/completions", json=ASK)
    finished = spans.get_finished_spans()
    root = one_tree(finished)
    names = [s.name for s in finished]
    assert STEPS <= set(names), sorted(set(names))
    by_id = {s.context.span_id: s for s in finished}
    for chat in named(spans, "proxy.chat"):
        assert by_id[chat.parent.span_id].name in STEPS, "an upstream call made outside any step span"
    for g in named(spans, "colm.guidance"):
        assert g.parent.span_id == root.context.span_id
        assert [s.name for s in finished if s.parent and s.parent.span_id == g.context.span_id] == ["proxy.chat"]
        assert {"colm.specialist", "colm.server", "colm.completion_tokens", "colm.cost_usd", "colm.cached",
                "colm.coalesced", "colm.retries"} <= set(g.attributes)
    rnd = named(spans, "colm.round")[0]
    assert {"colm.index", "colm.completion_tokens", "colm.stop_reason"} <= set(rnd.attributes)


# -- a real OTLP/HTTP endpoint -----------------------------------------------------------


@dataclass
class Received:
    """What an OTLP/HTTP receiver got: the paths posted to and the decoded export requests."""

    url: str = ""
    paths: list[str] = field(default_factory=list)
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)

    def spans(self) -> list[tuple[str, str, object]]:
        """(service.name, trace id, span) for every span received."""
        out = []
        for req in self.requests:
            for rs in req.resource_spans:
                service = next(a.value.string_value for a in rs.resource.attributes if a.key == "service.name")
                out += [(service, s.trace_id.hex(), s) for ss in rs.scope_spans for s in ss.spans]
        return out


@contextmanager
def otlp_receiver() -> Iterator[Received]:
    """A minimal OTLP/HTTP trace receiver: POST /v1/traces with protobuf, as collectors take it."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.paths.append(self.path)
            received.requests.append(ExportTraceServiceRequest.FromString(body))
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


async def test_spans_reach_a_real_otlp_http_endpoint(http, monkeypatch):
    with otlp_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "colm-under-test")
        telemetry.configure()
        try:
            resp = await http.post("/v1/chat/completions", json=ASK)
            assert resp.status_code == 200
            assert telemetry.flush()
        finally:
            monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
            telemetry.reset()
        got = receiver.spans()
    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}
    assert {service for service, _, _ in got} == {"colm-under-test"}
    assert len({trace for _, trace, _ in got}) == 1
    by_name = {s.name: s for _, _, s in got}
    assert {"colm.request", "proxy.chat", "proxy.queue", "proxy.attempt"} <= set(by_name)
    ids = {s.span_id for _, _, s in got}
    assert all(s.parent_span_id in ids for _, _, s in got if s.name != "colm.request")
    assert by_name["colm.request"].parent_span_id == b""
    model = next(a.value.string_value for a in by_name["colm.request"].attributes if a.key == "colm.model")
    assert model == "colm" and json.dumps(model)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
async def test_what_the_app_says_of_itself_is_on_the_request_span(spans, http, path):
    """`user`, `safety_identifier` and `metadata` are honoured by recording them where operators look."""
    tags = {"user": "user-42", "safety_identifier": "hash-42", "metadata": {"app": "crm", "tenant": "7"}}
    body = {**ASK, **tags} if path.endswith("completions") else {"model": "colm", "input": "Hi", **tags}
    resp = await http.post(path, json=body)
    assert resp.status_code == 200, resp.text
    root = named(spans, "colm.request")[0]
    assert root.attributes["colm.request.user"] == "user-42"
    assert root.attributes["colm.request.safety_identifier"] == "hash-42"
    assert root.attributes["colm.request.metadata.app"] == "crm" and root.attributes["colm.request.metadata.tenant"] == "7"
