"""LLMEngine over a fake vLLM engine: the request's sampling reaches vLLM's SamplingParams, and
vLLM's outputs (n answers, per-position logprob dicts) come back as samples and OpenAI's
logprobs shape, whole or streamed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from vllm.logprobs import Logprob
from vllm.sampling_params import RequestOutputKind

from colm_serve.client_model.engine import LLMEngine
from colm_serve.client_model.types import GenerationRequest
from colm_serve.config import EngineConfig
from colm_serve.errors import InvalidRequest

# Two answers of two tokens each; every position holds the sampled token and the top two.
ANSWERS = {0: [(11, " a", -0.1, {12: (" b", -2.5)}), (13, " c", -0.2, {14: (" d", float("-inf"))})],
           1: [(21, " x", -0.3, {22: (" y", -0.05)}), (23, " z", -0.4, {})]}


class Tokenizer:
    def apply_chat_template(self, messages, *, add_generation_prompt: bool, tokenize: bool) -> list[int]:
        return [1, 2, 3]


def _position(token: int, text: str, logprob: float, others: dict) -> dict[int, Logprob]:
    found = {token: Logprob(logprob=logprob, decoded_token=text)}
    found.update({t: Logprob(logprob=lp, decoded_token=s) for t, (s, lp) in others.items()})
    return found


def _piece(index: int, steps: list, *, finished: bool) -> SimpleNamespace:
    return SimpleNamespace(index=index, text="".join(s[1] for s in steps), token_ids=[s[0] for s in steps],
                           logprobs=[_position(*s) for s in steps], finish_reason="stop" if finished else None,
                           cumulative_logprob=sum(s[2] for s in steps))


class FakeVLLM:
    def __init__(self) -> None:
        self.params = None

    async def generate(self, prompt: dict, params, request_id: str):
        self.params = params
        out = lambda outputs, done: SimpleNamespace(outputs=outputs, prompt_token_ids=prompt["prompt_token_ids"],
                                                    finished=done, num_cached_tokens=2)
        if params.output_kind == RequestOutputKind.FINAL_ONLY:
            yield out([_piece(i, steps, finished=True) for i, steps in ANSWERS.items()], True)
            return
        for position in range(2):  # DELTA: each answer's new token, the answers interleaved
            for i, steps in ANSWERS.items():
                yield out([_piece(i, [steps[position]], finished=position == 1)], position == 1 and i == 1)


@pytest.fixture
def vllm() -> FakeVLLM:
    return FakeVLLM()


@pytest.fixture
def engine(vllm) -> LLMEngine:
    return LLMEngine(EngineConfig(), engine_factory=lambda cfg, model: vllm, tokenizer_factory=lambda model: Tokenizer())


def request(**kw) -> GenerationRequest:
    return GenerationRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=8, **kw)


async def test_sampling_reaches_vllm(engine, vllm):
    await engine.generate(request(n=2, temperature=0.8, presence_penalty=0.5, frequency_penalty=-1, top_logprobs=2,
                                  logit_bias={42: -100.0}, structured={"json": {"type": "object"}}))
    p = vllm.params
    assert (p.n, p.presence_penalty, p.frequency_penalty, p.logprobs) == (2, 0.5, -1, 2)
    assert p.logit_bias == {42: -100.0} and p.structured_outputs.json == {"type": "object"}


async def test_greedy_sampling_with_n_is_the_callers_mistake(engine):
    with pytest.raises(InvalidRequest) as err:
        await engine.generate(request(n=2, temperature=0))
    assert "greedy" in err.value.message


async def test_generate_returns_every_answer_with_openai_logprobs(engine):
    out = await engine.generate(request(n=2, temperature=1, top_logprobs=2, logprobs=True))
    assert [s.text for s in out.samples] == [" a c", " x z"] and out.text == " a c"
    assert out.completion_tokens == 4 and out.prompt_tokens == 3 and out.cached_prompt_tokens == 2
    assert out.token_logprobs == [-0.1, -0.2]  # the cascade's signal: the first answer's
    first, second = out.samples[0].logprobs
    assert (first.token, first.logprob, first.bytes) == (" a", -0.1, list(b" a"))
    assert [(t.token, t.logprob) for t in first.top_logprobs] == [(" a", -0.1), (" b", -2.5)]
    assert second.top_logprobs[1].logprob == -9999.0  # -inf is no JSON
    y, x = out.samples[1].logprobs[0].top_logprobs
    assert (y.token, x.token) == (" y", " x")  # most likely first, the sampled one need not be


async def test_stream_interleaves_the_answers_and_counts_each(engine):
    deltas = [d async for d in engine.stream(request(n=2, temperature=1, top_logprobs=1))]
    assert [(d.index, d.text) for d in deltas] == [(0, " a"), (1, " x"), (0, " c"), (1, " z")]
    ends = [d for d in deltas if d.finish_reason]
    assert [(d.index, d.completion_tokens, d.prompt_tokens) for d in ends] == [(0, 2, 3), (1, 2, 3)]
    assert [d.logprobs[0].token for d in deltas] == [" a", " x", " c", " z"]
    assert all(len(d.logprobs[0].top_logprobs) == 1 for d in deltas)


async def test_without_logprobs_none_are_asked_or_reported(engine, vllm):
    out = await engine.generate(request(n=2, temperature=1))
    assert vllm.params.logprobs is None and all(s.logprobs is None for s in out.samples)
