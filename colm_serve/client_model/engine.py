"""LLMEngine: a Ray Serve deployment class around vLLM's AsyncLLM.

It serves the client model (`ClientModel`) and the embedded stand-in for remote servers.
Prompts are chat-templated and tokenized here, so that prompt length is checked against the
context with exact token counts before the engine sees it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, Callable

from colm_serve.client_model import reaper
from colm_serve.client_model.types import (
    Generation,
    GenerationDelta,
    GenerationRequest,
    Sample,
    TokenLogprob,
    TopLogprob,
)
from colm_serve.config import EngineConfig
from colm_serve.deadline import Deadline
from colm_serve.errors import ContextLengthExceeded, InvalidRequest, ServiceUnavailable
from colm_serve.fairness import FairQueue

logger = logging.getLogger("colm_serve.engine")


def _default_engine_factory(config: EngineConfig, model: str) -> Any:
    from vllm import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    args = AsyncEngineArgs(
        model=model,
        dtype=config.dtype,
        max_model_len=config.max_model_len,
        max_num_seqs=config.max_num_seqs,
        enforce_eager=config.enforce_eager,
        seed=config.seed,
        gpu_memory_utilization=config.gpu_memory_utilization,
        tensor_parallel_size=config.tensor_parallel_size,
        **config.engine_kwargs,
    )
    return AsyncLLM.from_engine_args(args)


def _default_tokenizer_factory(model: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


class LLMEngine:
    """Chat generation over one vLLM engine; `engine_factory` lets tests inject a fake."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        default_max_tokens: int = 512,
        queue_limit: int = 256,
        engine_factory: Callable[[EngineConfig, str], Any] | None = None,
        tokenizer_factory: Callable[[str], Any] | None = None,
        reap: bool | None = None,
    ) -> None:
        self._config = config
        self._default_max_tokens = default_max_tokens
        model = config.resolved_model()
        # Read by the CPU build when the engine process starts; ignored on GPU.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, int(config.kv_cache_space_gib))))
        if config.cpu_cores:  # this replica's own process: the engine it starts inherits the binding
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = config.cpu_cores
        logger.info("starting vLLM engine for %s", model)
        # A replica killed outright cannot shut its engine down; its watcher stops every process
        # the engine starts, then. By default only a Ray actor needs one (reaper.in_ray_actor).
        reap = reaper.in_ray_actor() if reap is None else reap
        self._reaper = reaper.guard() if reap else None
        self._tokenizer = (tokenizer_factory or _default_tokenizer_factory)(model)
        self._engine = (engine_factory or _default_engine_factory)(config, model)
        # Generations in progress, and those their caller abandoned (client gone, deadline).
        self._in_flight, self._aborted = 0, 0
        # The engine batches max_num_seqs at once and queues the rest first come, first served;
        # this queue in front of it shares those slots fairly among client apps instead.
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

    def _sampling(self, req: GenerationRequest, max_tokens: int, delta: bool) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        # vLLM's logprobs: the sampled token's, plus this many alternatives per position.
        logprobs = req.top_logprobs if req.top_logprobs is not None else (0 if req.logprobs else None)
        try:
            return SamplingParams(
                n=req.n,
                max_tokens=max_tokens,
                min_tokens=min(req.min_tokens, max_tokens),
                ignore_eos=req.ignore_eos,
                temperature=req.temperature,
                top_p=req.top_p,
                presence_penalty=req.presence_penalty,
                frequency_penalty=req.frequency_penalty,
                logit_bias=req.logit_bias,
                stop=req.stop,
                seed=req.seed,
                logprobs=logprobs,
                structured_outputs=StructuredOutputsParams(**req.structured) if req.structured else None,
                output_kind=RequestOutputKind.DELTA if delta else RequestOutputKind.FINAL_ONLY,
            )
        except Exception as exc:  # vLLM's own checks (e.g. n > 1 with greedy sampling): the caller's mistake
            if _request_error(exc):
                raise InvalidRequest(str(exc), param=getattr(exc, "parameter", None)) from None
            raise

    async def _run(self, req: GenerationRequest, delta: bool) -> AsyncIterator[Any]:
        ids, max_tokens = self._tokenize(req)
        request_id = req.request_id or uuid.uuid4().hex
        params = self._sampling(req, max_tokens, delta)
        self._in_flight += 1
        try:
            async with self._queue.slot(req.client, req.weight, Deadline.from_wall(req.deadline)):
                outputs = self._engine.generate({"prompt_token_ids": ids}, params, f"{request_id}-{uuid.uuid4().hex[:6]}")
                async with aclosing(outputs):
                    async for out in outputs:
                        yield out
        except (asyncio.CancelledError, GeneratorExit):
            self._aborted += 1  # vLLM's generate() aborts the request as this unwinds through it
            raise
        except Exception as exc:  # an engine failure must reach the caller as a clear 503
            if _request_error(exc):  # vLLM's request checks (logit_bias out of the vocabulary, a bad schema)
                raise InvalidRequest(str(exc), param=getattr(exc, "parameter", None)) from None
            if type(exc).__name__ in ("EngineDeadError", "EngineGenerateError"):
                raise ServiceUnavailable(f"the model engine failed: {type(exc).__name__}") from exc
            raise
        finally:
            self._in_flight -= 1

    async def generate(self, req: GenerationRequest) -> Generation:
        final = None
        async with aclosing(self._run(req, delta=False)) as outputs:  # closing it aborts in vLLM at once
            async for out in outputs:
                final = out
        if final is None or not final.outputs:
            raise ServiceUnavailable("the model engine returned no output")
        completions = sorted(final.outputs, key=_index)
        first = completions[0]
        tokens = _sampled_logprobs(first) if req.logprobs else None
        return Generation(
            text=first.text,
            prompt_tokens=len(final.prompt_token_ids or []),
            completion_tokens=sum(len(c.token_ids) for c in completions),
            finish_reason=first.finish_reason,
            cached_prompt_tokens=final.num_cached_tokens or 0,
            mean_logprob=_mean(first.cumulative_logprob, len(first.token_ids)) if req.logprobs else None,
            token_logprobs=tokens,
            samples=[
                Sample(index=_index(c), text=c.text, completion_tokens=len(c.token_ids), finish_reason=c.finish_reason,
                       logprobs=_token_entries(c, req.top_logprobs) if req.top_logprobs is not None else None)
                for c in completions
            ],
        )

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Pieces of each answer as vLLM writes them (with n > 1 the answers interleave); the
        piece that ends an answer carries its counts."""
        written: dict[int, int] = {}
        sampled: dict[int, list[float]] = {}
        async with aclosing(self._run(req, delta=True)) as outputs:  # a dropped stream aborts at once
            async for out in outputs:
                for piece in out.outputs:
                    i = _index(piece)
                    written[i] = written.get(i, 0) + len(piece.token_ids)
                    sampled.setdefault(i, []).extend(_sampled_logprobs(piece) if req.logprobs else [])
                    ends = piece.finish_reason is not None
                    done = req.logprobs and ends
                    yield GenerationDelta(
                        index=i,
                        text=piece.text,
                        prompt_tokens=len(out.prompt_token_ids or []) if ends else 0,
                        completion_tokens=written[i] if ends else 0,
                        finish_reason=piece.finish_reason if ends else None,
                        cached_prompt_tokens=(out.num_cached_tokens or 0) if ends else 0,
                        mean_logprob=_mean(sum(sampled[i]), written[i]) if done else None,
                        token_logprobs=sampled[i] if done else None,
                        logprobs=_token_entries(piece, req.top_logprobs) if req.top_logprobs is not None else None,
                    )

    async def count_tokens(self, messages: list[dict]) -> int:
        return len(self._template(messages))

    def stats(self) -> dict[str, int]:
        """Counters for tests and operators: a dropped stream must show up as aborted."""
        return {"in_flight": self._in_flight, "aborted": self._aborted, "waiting": self._queue.waiting}

    def max_model_len(self) -> int:
        return self._config.max_model_len

    async def check_health(self) -> None:
        """Ray Serve calls this periodically; a dead engine marks the replica unhealthy."""
        await self._engine.check_health()
        if getattr(self._engine, "errored", False):
            raise RuntimeError("vLLM engine is dead")

    def __del__(self) -> None:
        """Serve calls this on graceful replica shutdown (scale-down, redeploy, `serve shutdown`).

        Without it the engine's own processes outlive the replica and keep their memory.
        """
        engine = getattr(self, "_engine", None)
        if engine is not None and hasattr(engine, "shutdown"):
            try:
                engine.shutdown()
            except Exception:  # at interpreter exit vLLM's modules may be gone already
                logger.warning("vLLM engine shutdown failed", exc_info=True)
        watcher = getattr(self, "_reaper", None)
        if watcher is not None:
            watcher.stop()  # the engine is down; nothing is left for it to stop


def _request_error(exc: Exception) -> bool:
    """vLLM blames the request: its VLLMClientError (a 4xx), or a ValueError from its checks."""
    return isinstance(exc, ValueError) or any(c.__name__ == "VLLMClientError" for c in type(exc).__mro__)


def _index(completion: Any) -> int:
    """Which of the n answers a CompletionOutput belongs to."""
    return getattr(completion, "index", 0)


def _mean(total: float | None, count: int) -> float | None:
    return None if total is None or count == 0 else round(total / count, 6)


def _sampled_logprobs(piece: Any) -> list[float]:
    """The sampled tokens' log-probabilities in one delta (vLLM gives a dict per position)."""
    found = []
    for token_id, position in zip(piece.token_ids, piece.logprobs or []):
        entry = position.get(token_id) if position else None
        if entry is not None:
            found.append(entry.logprob)
    return found


LOWEST_LOGPROB = -9999.0  # JSON has no -inf; vLLM's server clamps to the same floor


def _token_entries(piece: Any, top: int) -> list[TokenLogprob]:
    """Each token of one piece in OpenAI's logprobs shape: the token, its log-probability and
    bytes, and the `top` most likely alternatives at its position (vLLM gives a dict per position
    holding the sampled token and the top ones, each with its decoded text)."""
    entries = []
    for token_id, position in zip(piece.token_ids, piece.logprobs or []):
        position = position or {}
        chosen = position.get(token_id)
        ranked = sorted(position.items(), key=lambda item: item[1].logprob, reverse=True)[:top]
        entries.append(TokenLogprob(
            **_alternative(chosen, token_id).model_dump(),
            top_logprobs=[_alternative(entry, other) for other, entry in ranked],
        ))
    return entries


def _alternative(entry: Any, token_id: int) -> TopLogprob:
    token = entry.decoded_token if entry is not None and entry.decoded_token is not None else f"token_id:{token_id}"
    logprob = LOWEST_LOGPROB if entry is None else max(entry.logprob, LOWEST_LOGPROB)
    return TopLogprob(token=token, logprob=logprob, bytes=list(token.encode("utf-8", errors="replace")))
