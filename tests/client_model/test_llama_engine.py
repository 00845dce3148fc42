"""The llama.cpp engine (the stand-in's `backend: llama_cpp`) on the real library and a real GGUF:
SmolLM2-135M's, which `prepare-models` keeps beside the converted weights. It answers as the vLLM
engine does (finish reasons, counts, log-probabilities, stop strings, sampling parameters), many
requests share its batch, a caller that leaves frees its slot, and what it cannot do is a 400."""

from __future__ import annotations

import asyncio
import math

import openai
import pytest

from colm_serve.client_model.llama_engine import LlamaCppEngine, TextOut
from colm_serve.client_model.types import GenerationRequest
from colm_serve.config import LlamaCppConfig
from colm_serve.errors import ContextLengthExceeded, InvalidRequest
from colm_serve.stand_in.service import StandInService
from tests.reliability.conftest import ServedApp

ASK = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
LONG = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


@pytest.fixture(scope="module")
def engine() -> LlamaCppEngine:
    return LlamaCppEngine(LlamaCppConfig(backend="llama_cpp", model="smollm2-135m-instruct", max_num_seqs=2,
                                         max_model_len=512, threads=1))


def req(messages=ASK, **kw) -> GenerationRequest:
    return GenerationRequest(messages=messages, **kw)


async def test_a_greedy_answer_ends_on_its_own_with_its_counts_and_logprobs(engine):
    first = await engine.generate(req(max_tokens=60, logprobs=True))
    again = await engine.generate(req(max_tokens=60, logprobs=True))
    assert "Paris" in first.text and first.finish_reason == "stop"
    assert first.text == again.text  # greedy
    assert first.prompt_tokens == await engine.count_tokens(ASK)
    assert len(first.token_logprobs) == first.completion_tokens < 60
    assert all(lp <= 0 for lp in first.token_logprobs)
    assert first.mean_logprob == pytest.approx(sum(first.token_logprobs) / first.completion_tokens, abs=1e-5)


async def test_max_tokens_cuts_the_answer(engine):
    cut = await engine.generate(req(LONG, max_tokens=7))
    assert (cut.finish_reason, cut.completion_tokens) == ("length", 7)


async def test_a_stop_string_ends_the_answer_and_is_left_out_streamed_or_not(engine):
    whole = await engine.generate(req(max_tokens=60, stop=["Paris"]))
    pieces = [d async for d in engine.stream(req(max_tokens=60, stop=["Paris"]))]
    assert whole.finish_reason == "stop" and "Paris" not in whole.text and whole.text
    assert "".join(p.text for p in pieces) == whole.text
    assert pieces[-1].finish_reason == "stop" and pieces[-1].completion_tokens == whole.completion_tokens


async def test_top_logprobs_rank_the_alternatives_of_every_token(engine):
    answer = await engine.generate(req(max_tokens=5, top_logprobs=3))
    entries = answer.samples[0].logprobs
    assert len(entries) == answer.completion_tokens == 5
    for entry in entries:
        ranked = [alt.logprob for alt in entry.top_logprobs]
        assert len(ranked) == 3 and ranked == sorted(ranked, reverse=True)
        assert entry.logprob <= ranked[0] + 1e-9 and sum(math.exp(lp) for lp in ranked) <= 1 + 1e-6
    assert "".join(e.token for e in entries) == answer.text


async def test_min_tokens_and_ignore_eos_hold_the_end_back(engine):
    short = await engine.generate(req(max_tokens=60))
    longer = await engine.generate(req(max_tokens=60, min_tokens=short.completion_tokens + 10))
    forced = await engine.generate(req(max_tokens=short.completion_tokens + 5, ignore_eos=True))
    assert longer.completion_tokens >= short.completion_tokens + 10
    assert (forced.finish_reason, forced.completion_tokens) == ("length", short.completion_tokens + 5)


async def test_logit_bias_and_a_seed_steer_the_choice(engine):
    token = engine._tokenizer.encode("Banana", add_special_tokens=False)[0]
    biased = await engine.generate(req(max_tokens=3, logit_bias={token: 100}))
    assert biased.text.startswith(engine._tokenizer.decode([token]))
    sampled = [await engine.generate(req(LONG, max_tokens=12, temperature=1.0, top_p=0.9, seed=7)) for _ in range(2)]
    assert sampled[0].text == sampled[1].text


async def test_more_requests_than_slots_all_complete(engine):
    asks = [req([{"role": "user", "content": f"Count from {i} to {i + 5}."}], max_tokens=20) for i in range(5)]
    answers = await asyncio.gather(*(engine.generate(a) for a in asks))
    assert all(a.completion_tokens >= 1 and a.finish_reason in ("stop", "length") for a in answers)
    assert engine.stats()["in_flight"] == 0


async def test_a_caller_that_leaves_frees_its_slot(engine):
    aborted = engine.stats()["aborted"]
    streams = [engine.stream(req(LONG, max_tokens=400)) for _ in range(2)]
    for stream in streams:  # both slots taken, each mid-answer
        await anext(stream)
        await stream.aclose()
    answer = await asyncio.wait_for(engine.generate(req(max_tokens=10)), timeout=60)
    assert answer.completion_tokens >= 1
    assert engine.stats()["aborted"] == aborted + 2 and engine.stats()["in_flight"] == 0


async def test_a_prompt_that_starts_alike_shares_the_cached_cells(engine):
    system = {"role": "system", "content": "You are a geography expert who answers briefly and precisely. " * 4}
    fresh = await engine.generate(req([system, *ASK], max_tokens=30))
    again = await engine.generate(req([system, *ASK], max_tokens=30))
    other = await engine.generate(req([system, {"role": "user", "content": "And the capital of Spain?"}], max_tokens=30))
    assert fresh.cached_prompt_tokens == 0 or fresh.cached_prompt_tokens < fresh.prompt_tokens // 2
    assert again.cached_prompt_tokens == again.prompt_tokens - 1  # the last prompt token is always computed
    assert again.text == fresh.text  # greedy, on the shared cells
    assert await engine.count_tokens([system]) // 2 < other.cached_prompt_tokens < other.prompt_tokens - 1


async def test_without_kept_prefixes_nothing_is_shared():
    plain = LlamaCppEngine(LlamaCppConfig(backend="llama_cpp", model="smollm2-135m-instruct", max_num_seqs=1,
                                          max_model_len=256, threads=1, kept_prefixes=0))
    answers = [await plain.generate(req(max_tokens=8)) for _ in range(2)]
    assert [a.cached_prompt_tokens for a in answers] == [0, 0] and answers[0].text == answers[1].text


@pytest.mark.parametrize("kw, param", [({"n": 2, "temperature": 1.0}, "n"),
                                       ({"structured": {"choice": ["a", "b"]}}, "response_format"),
                                       ({"logit_bias": {10**7: 1.0}}, "logit_bias"),
                                       ({"max_tokens": 600}, "max_tokens")])
async def test_what_it_cannot_do_is_refused_by_name(engine, kw, param):
    with pytest.raises(InvalidRequest) as err:
        await engine.generate(req(**kw))
    assert err.value.param == param


async def test_a_prompt_longer_than_the_context_is_refused(engine):
    with pytest.raises(ContextLengthExceeded):
        await engine.generate(req([{"role": "user", "content": "word " * 600}]))


def test_the_stand_in_serves_it_to_the_openai_sdk(engine):
    service = StandInService({"served_models": ["tiny"], "engine": {"backend": "llama_cpp", "max_model_len": 512}},
                             engine=None, client=engine)
    with ServedApp(service.__serve_build_asgi_app__()) as served, \
            openai.OpenAI(base_url=served.url + "/v1", api_key="x", max_retries=0, timeout=60) as sdk:
        unary = sdk.chat.completions.create(model="tiny", messages=ASK, max_tokens=30, temperature=0, logprobs=True,
                                           top_logprobs=2)
        chunks = list(sdk.chat.completions.create(model="tiny", messages=ASK, max_tokens=30, temperature=0, stream=True,
                                                  stream_options={"include_usage": True}))
        with pytest.raises(openai.BadRequestError) as err:
            sdk.chat.completions.create(model="tiny", messages=ASK, n=2, temperature=1.0)
    assert "Paris" in unary.choices[0].message.content and len(unary.choices[0].logprobs.content) == unary.usage.completion_tokens
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == unary.choices[0].message.content and chunks[-1].usage.completion_tokens == unary.usage.completion_tokens
    assert err.value.body["param"] == "n"


class _Chars:
    """A tokenizer whose tokens are single characters, to script what each token lets out."""

    def decode(self, ids, **_):
        return "".join(chr(i) for i in ids)


def test_text_that_may_begin_a_stop_string_waits_for_the_next_token():
    out = TextOut(_Chars(), ["END"])
    released = [out.add(ord(c), end=False) for c in "abEN"]
    assert released == [("a", False), ("b", False), ("", False), ("", False)]
    assert out.add(ord("x"), end=False) == ("ENx", False)
    assert out.add(ord("E"), end=False) == ("", False)
    assert [out.add(ord(c), end=False) for c in "ND"] == [("", False), ("", True)]


def test_an_incomplete_character_waits_and_the_end_lets_everything_out():
    out = TextOut(_Chars(), ["zz"])
    assert out.add(0xFFFD, end=False) == ("", False)
    assert out.add(ord("z"), end=False) == ("\ufffd", False)  # the character settled; "z" may begin "zz"
    assert out.add(0, end=True) == ("z", False)
