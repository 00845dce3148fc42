"""What every local engine shares, whichever library runs the model (vLLM, llama.cpp).

Prompts are chat-templated and tokenized here, so that prompt length is checked against the
context with exact token counts before the engine sees it; a fair queue in front of the
engine's slots shares them among client apps; counters tell tests and operators what runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from colm_serve.client_model.types import GenerationRequest
from colm_serve.deadline import Deadline
from colm_serve.errors import ContextLengthExceeded, InvalidRequest
from colm_serve.fairness import FairQueue


def load_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


class LocalEngine:
    """The chat template, the context checks, the fair queue and the counters of one engine."""

    def __init__(self, config: Any, *, default_max_tokens: int, queue_limit: int, tokenizer: Any) -> None:
        self._config = config
        self._default_max_tokens = default_max_tokens
        self._tokenizer = tokenizer
        # Generations in progress, and those their caller abandoned (client gone, deadline).
        self._in_flight, self._aborted = 0, 0
        # The engine batches max_num_seqs at once and would queue the rest first come, first
        # served; this queue in front of it shares those slots fairly among client apps instead.
        self._queue = FairQueue(max_concurrency=config.max_num_seqs, queue_limit=queue_limit)

    def _tokenize(self, req: GenerationRequest) -> tuple[list[int], int]:
        ids = self._template(req.messages, continue_final=req.continue_final_message)
        limit = self._config.max_model_len
        room = limit - len(ids)
        if room <= 0:
            raise ContextLengthExceeded(
                f"the prompt has {len(ids)} tokens; the client model's context is {limit} tokens"
            )
        if req.max_tokens is not None and req.max_tokens > room:
            raise InvalidRequest(
                f"max_tokens={req.max_tokens} plus the prompt's {len(ids)} tokens exceeds the context of {limit} tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return list(ids), min(req.max_tokens or self._default_max_tokens, room)

    def _template(self, messages: list[dict], *, continue_final: bool = False) -> list[int]:
        """Token ids of the chat-templated prompt; `continue_final` leaves the last (assistant)
        message open, so the model continues its text instead of starting a new turn."""
        if continue_final and (not messages or messages[-1].get("role") != "assistant"):
            raise InvalidRequest("continue_final_message needs an assistant message last", param="messages")
        mode = {"continue_final_message": True, "add_generation_prompt": False} if continue_final else {"add_generation_prompt": True}
        ids = self._tokenizer.apply_chat_template(messages, tokenize=True, **mode)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "input_ids") else ids)

    @asynccontextmanager
    async def _slot(self, req: GenerationRequest) -> AsyncIterator[None]:
        """One of the engine's slots, shared fairly by client app; counted while waited for and held."""
        self._in_flight += 1
        try:
            async with self._queue.slot(req.client, req.weight, Deadline.from_wall(req.deadline)):
                yield
        except (asyncio.CancelledError, GeneratorExit):
            self._aborted += 1  # the engine stops the generation as this unwinds through it
            raise
        finally:
            self._in_flight -= 1

    async def count_tokens(self, messages: list[dict]) -> int:
        return len(self._template(messages))

    def stats(self) -> dict[str, int]:
        """Counters for tests and operators: a dropped stream must show up as aborted."""
        return {"in_flight": self._in_flight, "aborted": self._aborted, "waiting": self._queue.waiting}

    def max_model_len(self) -> int:
        return self._config.max_model_len
