"""LLMEngine: a Ray Serve deployment class around vLLM's AsyncLLM.

It serves the client model (`ClientModel`) and, by default, the embedded stand-in for remote
servers (`llama_engine.LlamaCppEngine` is the other choice there).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, Callable

from colm_serve.client_model import reaper
from colm_serve.client_model.local_engine import LocalEngine, load_tokenizer
from colm_serve.client_model.types import (
    Generation,
    GenerationDelta,
    GenerationRequest,
    Sample,
    TokenLogprob,
    TopLogprob,
)
from colm_serve.config import EngineConfig
from colm_serve.errors import InvalidRequest, ServiceUnavailable

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


class LLMEngine(LocalEngine):
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
        super().__init__(config, default_max_tokens=default_max_tokens, queue_limit=queue_limit,
                         tokenizer=(tokenizer_factory or load_tokenizer)(model))
        self._engine = (engine_factory or _default_engine_factory)(config, model)

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
        try:
            async with self._slot(req):
                outputs = self._engine.generate({"prompt_token_ids": ids}, params, f"{request_id}-{uuid.uuid4().hex[:6]}")
                async with aclosing(outputs):  # vLLM's generate() aborts the request as this unwinds through it
                    async for out in outputs:
                        yield out
        except Exception as exc:  # an engine failure must reach the caller as a clear 503
            if _request_error(exc):  # vLLM's request checks (logit_bias out of the vocabulary, a bad schema)
                raise InvalidRequest(str(exc), param=getattr(exc, "parameter", None)) from None
            if type(exc).__name__ in ("EngineDeadError", "EngineGenerateError"):
                raise ServiceUnavailable(f"the model engine failed: {type(exc).__name__}") from exc
            raise

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
    return TopLogprob.of(token, None if entry is None else entry.logprob)
