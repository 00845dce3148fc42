"""A client that goes away cancels the work behind its request.

In-process: the real router app on a real socket with fakes, and the pipeline cancelled
mid-guidance. Against the real app: a dropped `colm-client` stream is aborted in the vLLM
engine (the ClientModel deployment's `stats()` counts aborted generations).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from colm_serve.api.routes import create_api
from colm_serve.client_model.types import GenerationDelta, GenerationRequest
from colm_serve.protocol.caller import Caller
from colm_serve.protocol.openai import ChatCompletionRequest
from tests.fakes import FakeClient, FakeUpstreams, app_args
from tests.reliability.conftest import ServedApp, router_service

QUESTION = [{"role": "user", "content": "Write a very long story."}]


class EndlessClient(FakeClient):
    """Streams tokens until told to stop; records whether its generation was closed early."""

    def __init__(self) -> None:
        super().__init__()
        self.closed, self.finished = threading.Event(), False

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        self.requests.append(req)
        try:
            for i in range(2000):
                await asyncio.sleep(0.005)
                yield GenerationDelta(text=f" w{i}")
            self.finished = True
            yield GenerationDelta(prompt_tokens=5, completion_tokens=2000, finish_reason="length")
        finally:
            self.closed.set()


async def _read_then_drop(url: str, body: dict, *, chunks: int) -> list[str]:
    """Reads `chunks` answer chunks (progress before them does not count), then leaves."""
    got = []
    async with httpx.AsyncClient(timeout=30) as http:
        async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.startswith("data: ") and '"content"' in line:
                    got.append(line)
                if len(got) >= chunks:
                    break
    return got


@pytest.mark.parametrize("model", ["colm-client", "colm"])
async def test_a_dropped_stream_stops_the_client_model(model):
    client = EndlessClient()
    service = router_service(app_args(), upstreams=FakeUpstreams(), client=client)
    body = {"model": model, "messages": QUESTION, "stream": True}
    if model == "colm":
        body["colm"] = {"selector": "all", "iterations": 0, "summary": "none"}
    with ServedApp(create_api(service)) as app:
        got = await _read_then_drop(app.url, body, chunks=4)
        dropped = time.monotonic()
        assert await asyncio.to_thread(client.closed.wait, 5), "the generation went on after the client left"
    assert len(got) == 4 and not client.finished
    assert time.monotonic() - dropped < 5


async def test_cancelling_a_request_cancels_its_upstream_calls_and_starts_nothing_more():
    """What Ray Serve does when the HTTP client disconnects: it cancels the router's task."""
    ups = FakeUpstreams(delay={"expert": 30, "assistant": 30})
    client = FakeClient()
    service = router_service(app_args(), upstreams=ups, client=client)
    req = ChatCompletionRequest.model_validate(
        {"model": "colm", "messages": QUESTION, "colm": {"selector": "all", "top_k": 3}}
    )
    task = asyncio.create_task(service.chat(req, caller=Caller("anonymous")))
    while not ups.calls:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # every selected specialist has been asked by now
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    asked = len(ups.calls)
    assert asked >= 3 and len(ups.cancelled) == asked
    await asyncio.sleep(0.1)
    assert len(ups.calls) == asked and not client.requests  # no summary, no client model call


# -- against the real app --------------------------------------------------------------


def _client_model_stats() -> dict:
    from tests.reliability.replicas import deployment_handle

    return deployment_handle("ClientModel").stats.remote().result(timeout_s=60)


@pytest.mark.serve
def test_a_dropped_stream_is_aborted_in_the_real_engine(app_url, ray_driver):
    before = _client_model_stats()
    body = {"model": "colm-client", "messages": QUESTION, "max_tokens": 1500, "temperature": 0.8, "stream": True}
    got = []
    with httpx.Client(timeout=120) as http, http.stream("POST", f"{app_url}/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: "):
                got.append(line)
            if len(got) >= 5:
                break
    assert len(got) == 5
    deadline, stats = time.monotonic() + 30, before
    while time.monotonic() < deadline:
        stats = _client_model_stats()
        if stats["aborted"] > before["aborted"] and stats["in_flight"] == 0:
            break
        time.sleep(0.5)  # sync serve test polling the deployment
    assert stats["aborted"] == before["aborted"] + 1, stats
    assert stats["in_flight"] == 0, "the dropped generation is still running in vLLM"
    follow_up = httpx.post(f"{app_url}/v1/chat/completions", timeout=120,
                           json={"model": "colm-client", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    assert follow_up.status_code == 200
