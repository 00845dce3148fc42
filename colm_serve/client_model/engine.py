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
from colm_serve.client_model.types import Generation, GenerationDelta, GenerationRequest
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

        return SamplingParams(
            max_tokens=max_tokens,
            min_tokens=min(req.min_tokens, max_tokens),
            ignore_eos=req.ignore_eos,
            temperature=req.temperature,
            top_p=req.top_p,
            stop=req.stop,
            seed=req.seed,
            logprobs=0 if req.logprobs else None,  # 0: only the sampled token's log-probability
            structured_outputs=StructuredOutputsParams(**req.structured) if req.structured else None,
            output_kind=RequestOutputKind.DELTA if delta else RequestOutputKind.FINAL_ONLY,
        )

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
        if final is None:
            raise ServiceUnavailable("the model engine returned no output")
        completion = final.outputs[0]
        tokens = _sampled_logprobs(completion) if req.logprobs else None
        return Generation(
            text=completion.text,
            prompt_tokens=len(final.prompt_token_ids or []),
            completion_tokens=len(completion.token_ids),
            finish_reason=completion.finish_reason,
            cached_prompt_tokens=final.num_cached_tokens or 0,
            mean_logprob=_mean(completion.cumulative_logprob, len(completion.token_ids)) if req.logprobs else None,
            token_logprobs=tokens,
        )

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        completion_tokens, tokens = 0, []
        async with aclosing(self._run(req, delta=True)) as outputs:  # a dropped stream aborts at once
            async for out in outputs:
                piece = out.outputs[0]
                completion_tokens += len(piece.token_ids)
                tokens += _sampled_logprobs(piece) if req.logprobs else []
                done = req.logprobs and out.finished
                yield GenerationDelta(
                    text=piece.text,
                    prompt_tokens=len(out.prompt_token_ids or []) if out.finished else 0,
                    completion_tokens=completion_tokens if out.finished else 0,
                    finish_reason=piece.finish_reason if out.finished else None,
                    cached_prompt_tokens=(out.num_cached_tokens or 0) if out.finished else 0,
                    mean_logprob=_mean(sum(tokens), completion_tokens) if done else None,
                    token_logprobs=tokens if done else None,
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
