"""Deadlines: a request ends by its deadline (504 or a degraded answer), never hangs, and
the default deadline from RouterConfig.request_timeout_s reaches every upstream call."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest

from colm_serve.client_model.types import Generation, GenerationDelta, GenerationRequest
from tests.fakes import FakeClient, FakeUpstreams, app_args
from tests.reliability.conftest import asgi_client, router_service

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]
HANG_S = 30.0  # far beyond any deadline below: a test that waits this long has hung
BOUND_S = 5.0  # how late a 0.5 s deadline may be honoured on a loaded 2-core CI box


class SlowClient(FakeClient):
    """A client model that takes `seconds` before (and between) its tokens."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds, self.cancelled = seconds, 0

    async def _wait(self) -> None:
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def generate(self, req: GenerationRequest) -> Generation:
        await self._wait()
        return await super().generate(req)

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        async for delta in super().stream(req):
            await self._wait()
            yield delta


async def _post(service, body: dict) -> tuple[float, object]:
    async with asgi_client(service) as http:
        t0 = time.monotonic()
        resp = await asyncio.wait_for(http.post("/v1/chat/completions", json=body), HANG_S)
        return time.monotonic() - t0, resp


def _is_timeout(resp) -> bool:
    return resp.status_code == 504 and resp.json()["error"]["type"] == "timeout_error"


async def test_slow_specialists_degrade_to_the_client_model_by_the_deadline():
    ups = FakeUpstreams(delay={"expert": HANG_S, "assistant": HANG_S})
    service = router_service(app_args(), upstreams=ups, client=FakeClient())
    body = {"model": "colm", "messages": QUESTION, "colm": {"deadline_s": 0.5, "trace": True, "selector": "all"}}
    elapsed, resp = await _post(service, body)
    assert elapsed < BOUND_S
    assert resp.status_code == 200 or _is_timeout(resp), resp.text
    if resp.status_code == 200:
        colm = resp.json()["colm"]
        assert colm["degraded"][0].startswith("client_only")
        assert all(g["error"] for g in colm["rounds"][0]["guidance"])
    assert ups.cancelled, "the straggling upstream calls must be cancelled, not left running"


@pytest.mark.parametrize("slow", ["summary", "client"])
async def test_a_slow_later_step_ends_in_a_504_by_the_deadline(slow):
    """Upstream calls carry the deadline, but a port may not honour it (and the client model
    is not an upstream): the router itself must end the request on time."""
    ups = FakeUpstreams(delay={"merge": HANG_S} if slow == "summary" else {})
    client = SlowClient(HANG_S if slow == "client" else 0)
    service = router_service(app_args(), upstreams=ups, client=client)
    body = {"model": "colm", "messages": QUESTION,
            "colm": {"deadline_s": 0.5, "selector": "all", "iterations": 0, "summary": "server"}}
    elapsed, resp = await _post(service, body)
    assert elapsed < BOUND_S and _is_timeout(resp), resp.text
    assert ups.cancelled or client.cancelled


async def test_colm_client_requests_honour_the_deadline_too():
    client = SlowClient(HANG_S)
    service = router_service(app_args(), upstreams=FakeUpstreams(), client=client)
    body = {"model": "colm-client", "messages": QUESTION, "colm": {"deadline_s": 0.5}}
    elapsed, resp = await _post(service, body)
    assert elapsed < BOUND_S and _is_timeout(resp), resp.text
    assert client.cancelled == 1


async def test_a_stream_past_its_deadline_ends_with_an_error_event_and_done():
    client = SlowClient(0.2)
    client.answers = ["word " * 100]
    service = router_service(app_args(), upstreams=FakeUpstreams(), client=client)
    body = {"model": "colm-client", "messages": QUESTION, "stream": True, "colm": {"deadline_s": 1.0}}
    async with asgi_client(service) as http:
        t0 = time.monotonic()
        async with http.stream("POST", "/v1/chat/completions", json=body) as resp:
            lines = [line async for line in resp.aiter_lines() if line.startswith("data: ")]
    assert time.monotonic() - t0 < BOUND_S
    assert lines[-1] == "data: [DONE]"
    errors = [json.loads(line[6:])["error"] for line in lines[:-1] if '"error"' in line]
    assert errors and errors[0]["type"] == "timeout_error"
    assert 1 < len(lines) < 100


async def test_the_default_deadline_comes_from_request_timeout_s():
    ups = FakeUpstreams()
    service = router_service(app_args(router={"request_timeout_s": 42.0}), upstreams=ups, client=FakeClient())
    before = time.time()
    _, resp = await _post(service, {"model": "colm", "messages": QUESTION, "colm": {"selector": "all"}})
    after = time.time()
    assert resp.status_code == 200 and ups.calls
    for call in ups.calls:
        assert before + 42.0 <= call.deadline <= after + 42.0
    _, resp = await _post(service, {"model": "server/math", "messages": QUESTION})
    assert resp.status_code == 200 and before + 42.0 <= ups.calls[-1].deadline <= time.time() + 42.0


async def test_a_per_request_deadline_overrides_the_default():
    ups = FakeUpstreams()
    service = router_service(app_args(router={"request_timeout_s": 42.0}), upstreams=ups, client=FakeClient())
    before = time.time()
    _, resp = await _post(service, {"model": "colm", "messages": QUESTION, "colm": {"selector": "all", "deadline_s": 7}})
    assert resp.status_code == 200
    assert all(before + 7 <= c.deadline <= time.time() + 7 for c in ups.calls)
