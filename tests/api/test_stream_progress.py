"""The stream shows the work as it happens: the role chunk at once, Progress as
`delta.reasoning_content`, the answer as `delta.content`, keep-alive comments while the next
event is being worked on, and the trace on the last chunk.

`sse()` is driven by real event generators (timed with asyncio, no mocks); then the real app
over fakes; then (serve tier) the real app with the real client model.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from colm_serve.api import responses
from colm_serve.api.routes import create_api
from colm_serve.outcome import Outcome, Progress
from colm_serve.protocol.trace import Trace
from colm_serve.protocol.usage import Usage
from tests.api.test_routes import _service
from tests.fakes import FakeUpstreams

KEEPALIVE = ": keep-alive\n\n"


class Work:
    """A handler's events, each after a delay; it records whether it was cancelled or closed."""

    def __init__(self, *events_after: tuple[float, object]) -> None:
        self.script = list(events_after)
        self.started = 0
        self.cancelled = self.closed = False
        self.ended = asyncio.Event()

    async def events(self) -> AsyncIterator:
        self.started += 1
        try:
            for delay, event in self.script:
                await asyncio.sleep(delay)
                yield event
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        except GeneratorExit:
            self.closed = True
            raise
        finally:
            self.ended.set()


def outcome(answer: str = "Use reversed().") -> Outcome:
    trace = Trace(strategy="guide", usage=Usage(server_prompt_tokens=10, server_completion_tokens=5, cost_usd=0.01,
                                                baseline_cost_usd=0.05, saving_usd=0.04))
    return Outcome(answer=answer, finish_reason="stop", trace=trace)


def parse(raw: list[str]) -> list[dict | str]:
    """Chunks as dicts; keep-alives and [DONE] as they are."""
    return [json.loads(r[6:]) if r.startswith("data: {") else r for r in raw]


async def collect(work: Work, **kw) -> list[dict | str]:
    kw = {"trace": False, "include_usage": True, **kw}
    return parse([piece async for piece in responses.sse("colm", work.events(), **kw)])


def deltas(chunks: list, field: str) -> list[str]:
    return [c["choices"][0]["delta"][field] for c in chunks if isinstance(c, dict) and field in c["choices"][0]["delta"]]


SCRIPT = [(0, Progress("plan", "guide: asking math, code\n")), (0, Progress("guidance:code", "Use slicing.")),
          (0, "Use "), (0, "reversed()."), (0, outcome())]


async def test_progress_then_answer_then_the_trace_then_done():
    chunks = await collect(Work(*SCRIPT), trace=True)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert deltas(chunks, "reasoning_content") == ["guide: asking math, code\n", "Use slicing."]
    assert [c["colm"]["step"] for c in chunks[1:3]] == ["plan", "guidance:code"]
    assert deltas(chunks, "content") == ["", "Use ", "reversed()."]
    first_answer = next(i for i, c in enumerate(chunks) if deltas([c], "content") not in ([], [""]))
    assert max(i for i, c in enumerate(chunks) if deltas([c], "reasoning_content")) < first_answer
    last = chunks[-2]
    assert last["choices"][0]["finish_reason"] == "stop" and last["colm"]["strategy"] == "guide"
    assert last["colm"]["usage"]["saving_usd"] == 0.04 and last["usage"]["total_tokens"] == 15
    assert chunks[-1] == "data: [DONE]\n\n" and KEEPALIVE not in chunks


async def test_progress_off_leaves_only_the_answer():
    chunks = await collect(Work(*SCRIPT), progress=False)
    assert deltas(chunks, "reasoning_content") == [] and deltas(chunks, "content") == ["", "Use ", "reversed()."]
    assert set(chunks[-2]["colm"]) == {"usage", "degraded"}


async def test_a_plain_openai_stream_names_no_step():
    chunks = await collect(Work(*SCRIPT), trace=None)
    assert deltas(chunks, "reasoning_content") and not any("colm" in c for c in chunks if isinstance(c, dict))


async def test_the_role_chunk_goes_out_before_any_work_is_done():
    work = Work((5, "late"), (0, outcome()))
    stream = responses.sse("colm", work.events(), trace=False, include_usage=False)
    first = await asyncio.wait_for(anext(stream), 0.5)
    assert json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
    await stream.aclose()


async def test_keep_alives_while_waiting_and_the_wait_is_never_cancelled():
    work = Work((0.35, Progress("guidance:math", "slow guidance")), (0, "answer"), (0, outcome()))
    chunks = await collect(work, keepalive_s=0.05)
    waits = chunks[1:chunks.index(next(c for c in chunks[1:] if isinstance(c, dict)))]
    assert len(waits) >= 4 and set(waits) == {KEEPALIVE}
    assert deltas(chunks, "reasoning_content") == ["slow guidance"] and deltas(chunks, "content") == ["", "answer"]
    assert work.started == 1 and not work.cancelled


async def test_no_keep_alives_while_events_flow():
    work = Work(*[(0.01, f"w{i} ") for i in range(10)], (0, outcome()))
    chunks = await collect(work, keepalive_s=0.2)
    assert KEEPALIVE not in chunks and len(deltas(chunks, "content")) == 11


async def test_a_client_that_leaves_mid_wait_cancels_the_work():
    work = Work((0, Progress("plan", "asking")), (30, "never"), (0, outcome()))
    stream = responses.sse("colm", work.events(), trace=False, include_usage=False, keepalive_s=0.02)
    got = [await anext(stream) for _ in range(3)]
    assert parse(got)[2] == KEEPALIVE
    await stream.aclose()
    await asyncio.wait_for(work.ended.wait(), 1)
    assert work.cancelled


async def test_a_client_that_leaves_between_events_closes_the_work():
    work = Work((0, Progress("plan", "asking")), (0, "first "), (30, "never"), (0, outcome()))
    stream = responses.sse("colm", work.events(), trace=False, include_usage=False, keepalive_s=5)
    got = [await anext(stream) for _ in range(3)]
    assert deltas(parse(got), "content") == ["", "first "]
    await stream.aclose()  # the work waits at its yield: it is closed there, not left to the garbage collector
    assert work.ended.is_set() and work.closed and not work.cancelled


async def test_an_error_mid_stream_is_an_error_event_then_done():
    async def failing() -> AsyncIterator:
        yield Progress("plan", "asking")
        raise openai.APIConnectionError(request=httpx.Request("POST", "http://upstream"))

    chunks = parse([p async for p in responses.sse("colm", failing(), trace=False, include_usage=False)])
    assert "error" in chunks[-2] and chunks[-1] == "data: [DONE]\n\n"


# -- the real app over fakes ----------------------------------------------------------------

ASK = {"model": "colm", "messages": [{"role": "user", "content": "How do I reverse a list in Python?"}], "stream": True,
       "colm": {"selector": "all", "top_k": 2, "iterations": 1}}


async def stream_lines(app, body: dict) -> list[dict | str]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router") as http:
        async with http.stream("POST", "/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200 and resp.headers["x-accel-buffering"] == "no"
            raw = [line async for line in resp.aiter_lines() if line]
    return [json.loads(r[6:]) if r.startswith("data: {") else r + "\n\n" for r in raw]


async def test_a_colm_stream_shows_its_steps_before_the_answer():
    chunks = await stream_lines(create_api(_service()), ASK)
    reasoning, steps = deltas(chunks, "reasoning_content"), [c["colm"]["step"] for c in chunks[1:-2] if "colm" in c]
    assert reasoning and steps, "no Progress on the stream"
    answer_at = next(i for i, c in enumerate(chunks) if deltas([c], "content") not in ([], [""]))
    assert any(deltas([c], "reasoning_content") for c in chunks[:answer_at])
    assert "colm" in chunks[-2] and "usage" in chunks[-2]["colm"]


async def test_progress_false_streams_only_the_answer_through_the_app():
    chunks = await stream_lines(create_api(_service()), {**ASK, "colm": {**ASK["colm"], "progress": False}})
    assert deltas(chunks, "reasoning_content") == [] and "".join(deltas(chunks, "content"))


async def test_the_configured_keep_alive_interval_reaches_the_stream():
    """`router.keepalive_s` in the config; slow guidance leaves the stream idle meanwhile."""
    service = _service(router={"keepalive_s": 0.05}, upstreams=FakeUpstreams(delay={"expert": 0.3}))
    chunks = await stream_lines(create_api(service), ASK)
    assert chunks.count(KEEPALIVE) >= 3 and chunks[-1] == "data: [DONE]\n\n"


# -- the real app (serve tier) ----------------------------------------------------------------


@pytest.mark.serve
def test_the_real_app_streams_its_steps_before_the_answer(app_url):
    client = openai.OpenAI(base_url=f"{app_url}/v1", api_key="sk-local-test", max_retries=0, timeout=600)
    stream = client.chat.completions.create(
        model="colm", messages=[{"role": "user", "content": "How do I reverse a list in Python?"}], max_tokens=48,
        stream=True, extra_body={"colm": {"iterations": 0, "top_k": 2}},
    )
    order, last = [], None
    for chunk in stream:
        delta = chunk.choices[0].delta if chunk.choices else None
        if delta is not None and getattr(delta, "reasoning_content", None):
            order.append("progress")
        if delta is not None and delta.content:
            order.append("answer")
        last = chunk
    assert "progress" in order and "answer" in order and order.index("progress") < order.index("answer")
    assert last.model_extra["colm"]["usage"]["server_tokens"] > 0
