"""What an endpoint's GET /v1/models says about one model: who serves it and its context.

vLLM's OpenAI server lists `owned_by: "vllm"` and `max_model_len`; the project's stand-in
lists `owned_by: "local"` and `max_model_len`. Those servers take vLLM's
`structured_outputs`, and their context bounds the judge's output budget. OpenAI and most
hosted APIs list neither, and get neither.
"""

from __future__ import annotations

import logging

import openai
from pydantic import BaseModel, Field

from clients.eval.config import Endpoint

logger = logging.getLogger("clients.eval")

VLLM_OWNERS = frozenset({"vllm", "local"})


class ModelInfo(BaseModel):
    id: str
    owned_by: str | None = None
    max_model_len: int | None = None

    @property
    def vllm_like(self) -> bool:
        """A vLLM server, or one that lists its context as vLLM does (so it likely speaks its extensions)."""
        return (self.owned_by or "").lower() in VLLM_OWNERS or self.max_model_len is not None


async def probe_model(endpoint: Endpoint) -> ModelInfo | None:
    """The model's card, or None when the endpoint lists no models or not this one (logged, with
    what follows from it: the budget is then clamped on the server's context-length 400)."""
    sdk = openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, timeout=30.0, max_retries=1)
    try:
        page = await sdk.models.list()
    except openai.OpenAIError as exc:
        logger.info("%s: GET /v1/models failed (%s: %s); its context is unknown until the server names it",
                    endpoint.model, type(exc).__name__, exc)
        return None
    finally:
        await sdk.close()
    for card in page.data:
        if card.id == endpoint.model:
            extra = card.model_extra or {}
            length = extra.get("max_model_len")
            return ModelInfo(id=card.id, owned_by=card.owned_by,
                             max_model_len=length if isinstance(length, int) else None)
    logger.info("%s: not listed by %s/models (%s); its context is unknown until the server names it",
                endpoint.model, endpoint.base_url, ", ".join(c.id for c in page.data[:5]) or "none listed")
    return None


class JudgeCard(BaseModel):
    """Who judged a benchmark's files and how, kept beside the judgments for the table."""

    judge: str
    base_url: str
    owned_by: str | None = None
    max_model_len: int | None = None
    structured: bool = Field(description="Verdicts constrained with vLLM structured outputs.")
    max_tokens: int = Field(description="The judge output budget asked for (before clamping to the context).")

    @property
    def offline(self) -> bool:
        """The app's embedded stand-in (a small local model): its verdicts only show that the loop works."""
        return (self.owned_by or "").lower() == "local"
