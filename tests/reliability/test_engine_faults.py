"""LLMEngine (the ClientModel deployment class) over a fake vLLM engine: a dead engine fails
the health check (so Serve replaces the replica) and requests with a clear 503, and a
caller that goes away aborts its generation."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from vllm.v1.engine.exceptions import EngineDeadError

from colm_serve.client_model.engine import LLMEngine
from colm_serve.client_model.types import GenerationRequest
from colm_serve.config import EngineConfig
from colm_serve.errors import ServiceUnavailable

REQUEST = GenerationRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=50, request_id="r1")


class FakeTokenizer:
    def apply_chat_template(self, messages, *, add_generation_prompt: bool, tokenize: bool) -> list[int]:
        return list(range(sum(len(m["content"].split()) for m in messages) + 3))


class FakeVLLM:
    """The parts of vLLM's AsyncLLM the wrapper uses, with a switch to kill it."""

    def __init__(self, *, tokens: int = 50, token_s: float = 0.0) -> None:
        self.tokens, self.token_s = tokens, token_s
        self.errored = False
        self.aborted: list[str] = []
        self.die_after: int | None = None

    async def generate(self, prompt: dict, params, request_id: str):
        try:
            for i in range(self.tokens):
                if self.die_after is not None and i >= self.die_after:
                    self.errored = True
                    raise EngineDeadError()
                await asyncio.sleep(self.token_s)
                last = i == self.tokens - 1
                piece = SimpleNamespace(text=f" t{i}", token_ids=[i], finish_reason="length" if last else None)
                yield SimpleNamespace(outputs=[piece], prompt_token_ids=prompt["prompt_token_ids"], finished=last)
        except (asyncio.CancelledError, GeneratorExit):
            self.aborted.append(request_id)  # what AsyncLLM.generate does: abort the request
            raise

    async def check_health(self) -> None:
        if self.errored:
            raise EngineDeadError()


def _engine(fake: FakeVLLM) -> LLMEngine:
    return LLMEngine(EngineConfig(), engine_factory=lambda cfg, model: fake, tokenizer_factory=lambda model: FakeTokenizer())


async def test_check_health_passes_while_the_engine_lives_and_raises_once_it_is_dead():
    fake = FakeVLLM()
    engine = _engine(fake)
    await engine.check_health()
    fake.errored = True
    with pytest.raises(EngineDeadError):
        await engine.check_health()


async def test_check_health_raises_on_the_errored_flag_even_if_the_engine_says_it_is_fine():
    fake = FakeVLLM()
    fake.check_health = lambda: asyncio.sleep(0)  # an engine that never reports its own death
    engine = _engine(fake)
    fake.errored = True
    with pytest.raises(RuntimeError, match="dead"):
        await engine.check_health()


@pytest.mark.parametrize("streaming", [False, True])
async def test_an_engine_that_dies_mid_request_gives_a_clear_503(streaming):
    fake = FakeVLLM()
    fake.die_after = 3
    engine = _engine(fake)
    with pytest.raises(ServiceUnavailable, match="EngineDeadError") as err:
        if streaming:
            [d async for d in engine.stream(REQUEST)]
        else:
            await engine.generate(REQUEST)
    assert err.value.status == 503 and err.value.body()["error"]["type"] == "service_unavailable_error"
    with pytest.raises(EngineDeadError):
        await engine.check_health()
    assert engine.stats() == {"in_flight": 0, "aborted": 0, "waiting": 0}


async def test_a_dropped_stream_aborts_its_generation_at_once():
    fake = FakeVLLM(tokens=1000, token_s=0.001)
    engine = _engine(fake)
    stream = engine.stream(REQUEST)
    got = [await anext(stream) for _ in range(3)]
    assert engine.stats() == {"in_flight": 1, "aborted": 0, "waiting": 0}
    await stream.aclose()  # what Ray Serve does when the router (or its HTTP client) goes away
    assert [d.text for d in got] == [" t0", " t1", " t2"]
    assert fake.aborted == [fake.aborted[0]] and fake.aborted[0].startswith("r1-")
    assert engine.stats() == {"in_flight": 0, "aborted": 1, "waiting": 0}


async def test_a_cancelled_generation_is_aborted():
    fake = FakeVLLM(tokens=1000, token_s=0.01)
    engine = _engine(fake)
    task = asyncio.create_task(engine.generate(REQUEST))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(fake.aborted) == 1 and engine.stats() == {"in_flight": 0, "aborted": 1, "waiting": 0}
