"""LlamaCppEngine: a Ray Serve deployment class around llama.cpp, the stand-in's other engine.

It answers the same calls as `LLMEngine` (generate, stream) from a model's GGUF, with the chat
template, context checks and fair queue they share (`LocalEngine`). What it does not do, it
refuses by name: n > 1 and structured outputs need the vLLM engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from colm_serve.client_model import llama_lib
from colm_serve.client_model.llama_batcher import Batcher, Sequence, Step
from colm_serve.client_model.llama_sampling import TokenSampler
from colm_serve.client_model.local_engine import LocalEngine, load_tokenizer
from colm_serve.client_model.types import (
    Generation,
    GenerationDelta,
    GenerationRequest,
    Sample,
    TokenLogprob,
    TopLogprob,
)
from colm_serve.config import LlamaCppConfig
from colm_serve.errors import InvalidRequest, ServiceUnavailable

logger = logging.getLogger("colm_serve.engine")


def gguf_of(model_dir: str) -> Path:
    """The GGUF that `prepare-models` keeps in a prepared model's `gguf/` folder."""
    found = sorted(Path(model_dir, "gguf").glob("*.gguf"))
    if len(found) != 1:
        raise RuntimeError(f"{model_dir}/gguf holds {len(found)} GGUF files, not one: run `colm-serve prepare-models`")
    return found[0]


def _default_batcher(config: LlamaCppConfig, model_dir: str) -> Batcher:
    lib, ffi = llama_lib.load()
    return Batcher(lib, ffi, str(gguf_of(model_dir)), max_num_seqs=config.max_num_seqs,
                   max_model_len=config.max_model_len, threads=config.threads, batch_tokens=config.batch_tokens,
                   kept_prefixes=config.kept_prefixes, cores=config.core_set())


@dataclass
class _Piece:
    text: str
    step: Step
    finish: str | None
    prompt_tokens: int
    cached_tokens: int


class LlamaCppEngine(LocalEngine):
    def __init__(
        self,
        config: LlamaCppConfig,
        *,
        default_max_tokens: int = 512,
        queue_limit: int = 256,
        tokenizer_factory: Callable[[str], Any] | None = None,
        batcher_factory: Callable[[LlamaCppConfig, str], Batcher] | None = None,
    ) -> None:
        model = config.resolved_model()
        logger.info("starting llama.cpp for %s (%d threads)", model, config.threads)
        super().__init__(config, default_max_tokens=default_max_tokens, queue_limit=queue_limit,
                         tokenizer=(tokenizer_factory or load_tokenizer)(model))
        self._batcher = (batcher_factory or _default_batcher)(config, model)

    async def generate(self, req: GenerationRequest) -> Generation:
        pieces = [p async for p in self._pieces(req)]
        steps = [p.step for p in pieces]
        last = pieces[-1]
        text = "".join(p.text for p in pieces)
        tokens = [s.logprob for s in steps] if req.logprobs else None
        entries = [self._entry(s) for s in steps] if req.top_logprobs is not None else None
        return Generation(
            text=text, prompt_tokens=last.prompt_tokens, completion_tokens=len(steps), finish_reason=last.finish,
            cached_prompt_tokens=last.cached_tokens, mean_logprob=_mean(tokens), token_logprobs=tokens,
            samples=[Sample(text=text, completion_tokens=len(steps), finish_reason=last.finish, logprobs=entries)],
        )

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        sampled: list[float] = []
        async for piece in self._pieces(req):
            sampled.append(piece.step.logprob)
            ends = piece.finish is not None
            entries = [self._entry(piece.step)] if req.top_logprobs is not None else None
            if not (piece.text or ends or entries):
                continue
            done = req.logprobs and ends
            yield GenerationDelta(
                text=piece.text, prompt_tokens=piece.prompt_tokens if ends else 0,
                completion_tokens=len(sampled) if ends else 0, finish_reason=piece.finish,
                cached_prompt_tokens=piece.cached_tokens if ends else 0,
                mean_logprob=_mean(sampled) if done else None, token_logprobs=sampled if done else None,
                logprobs=entries,
            )

    async def _pieces(self, req: GenerationRequest) -> AsyncIterator[_Piece]:
        """Each written token with the text it lets out; the last one carries the finish reason."""
        _refuse_unsupported(req)
        ids, max_tokens = self._tokenize(req)
        sampler = TokenSampler(req, max_tokens, eog=self._batcher.eog, n_vocab=self._batcher.n_vocab)
        text = TextOut(self._tokenizer, req.stop or [])
        loop, out = asyncio.get_running_loop(), asyncio.Queue()
        async with self._slot(req):
            seq = Sequence(ids, sampler.choose, lambda item: _hand_over(loop, out, item))
            self._batcher.submit(seq)
            try:
                while True:
                    step = await out.get()
                    if isinstance(step, BaseException):
                        if isinstance(step, InvalidRequest):
                            raise step
                        raise ServiceUnavailable(f"the model engine failed: {step!r}") from step
                    released, stopped = text.add(step.token, end=step.finish == "stop")
                    finish = "stop" if stopped else step.finish
                    yield _Piece(released, step, finish, len(ids), seq.cached)
                    if finish:
                        return
            finally:
                seq.done = True  # the batcher retires a sequence whose caller left or stopped it

    def _entry(self, step: Step) -> TokenLogprob:
        chosen = self._alternative(step.token, step.logprob)
        return TokenLogprob(**chosen.model_dump(), top_logprobs=[self._alternative(t, lp) for t, lp in step.top or []])

    def _alternative(self, token: int, logprob: float | None) -> TopLogprob:
        return TopLogprob.of(self._tokenizer.decode([token]), logprob)

    async def check_health(self) -> None:
        if self._batcher.error is not None:
            raise RuntimeError(f"the llama.cpp batcher stopped: {self._batcher.error!r}")

    def __del__(self) -> None:
        batcher = getattr(self, "_batcher", None)
        if batcher is not None:
            batcher.close()


class TextOut:
    """The answer's text as tokens arrive: an incomplete UTF-8 character, or an end that may be the
    start of a stop string, is held back until the next token settles it; a stop string ends the
    answer and is left out, as vLLM leaves it out."""

    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        self._tokenizer, self._stop = tokenizer, [s for s in stop if s]
        self._ids: list[int] = []
        self._out = 0  # characters let out

    def add(self, token: int, *, end: bool) -> tuple[str, bool]:
        """The text this token lets out, and whether a stop string ended the answer."""
        if not end:
            self._ids.append(token)
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        cut = self._stop_at(text)
        if cut is not None:
            return self._let_out(text[:cut], len(text[:cut])), True
        if end:
            return self._let_out(text, len(text)), False
        if text.endswith("\ufffd"):
            return "", False
        return self._let_out(text, len(text) - self._held(text)), False

    def _stop_at(self, text: str) -> int | None:
        hits = [i for s in self._stop if (i := text.find(s, max(0, self._out - len(s) + 1))) >= 0]
        return min(hits) if hits else None

    def _held(self, text: str) -> int:
        """Characters at the end of `text` that could begin a stop string."""
        return max((k for s in self._stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)

    def _let_out(self, text: str, upto: int) -> str:
        if upto <= self._out:
            return ""
        released, self._out = text[self._out:upto], upto
        return released


def _refuse_unsupported(req: GenerationRequest) -> None:
    if req.n > 1:
        raise InvalidRequest("n > 1 is served by the vLLM engine only; this model runs on llama.cpp", param="n")
    if req.structured:
        raise InvalidRequest("structured outputs are served by the vLLM engine only; this model runs on llama.cpp",
                             param="response_format")


def _hand_over(loop: asyncio.AbstractEventLoop, out: asyncio.Queue, item: Step | BaseException) -> None:
    """From the batcher's thread to the caller's event loop; a loop already closed has no one to hear it."""
    try:
        loop.call_soon_threadsafe(out.put_nowait, item)
    except RuntimeError:
        pass


def _mean(logprobs: list[float] | None) -> float | None:
    return round(sum(logprobs) / len(logprobs), 6) if logprobs else None
