"""Picking each token from llama.cpp's logits, with vLLM's sampling parameters.

Log-probabilities are the model's own (of the raw logits), as vLLM reports them by default;
logit_bias, the penalties and the end-of-sequence mask (min_tokens, ignore_eos) shape only the
choice.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from colm_serve.client_model.llama_batcher import Step
from colm_serve.client_model.types import GenerationRequest
from colm_serve.errors import InvalidRequest


class TokenSampler:
    def __init__(self, req: GenerationRequest, max_tokens: int, *, eog: np.ndarray, n_vocab: int) -> None:
        self._req, self._max_tokens, self._eog = req, max_tokens, eog
        self._ends = frozenset(eog.tolist())
        self._rng = np.random.default_rng(req.seed)
        self._written: Counter[int] = Counter()
        self._count = 0
        self._top = req.top_logprobs or 0
        self._want_logprobs = req.logprobs or req.top_logprobs is not None
        self._bias = _bias(req.logit_bias, n_vocab)

    def choose(self, logits: np.ndarray) -> Step:
        shaped = self._shaped(logits)
        token = int(shaped.argmax()) if self._req.temperature == 0 else self._sample(shaped)
        self._written[token] += 1
        self._count += 1
        logprob, top = self._logprobs(logits, token) if self._want_logprobs else (None, None)
        if token in self._ends:
            finish = "stop"
        elif self._count >= self._max_tokens:
            finish = "length"
        else:
            finish = None
        return Step(token=token, logprob=logprob, top=top, finish=finish)

    def _shaped(self, logits: np.ndarray) -> np.ndarray:
        req = self._req
        no_end = req.ignore_eos or self._count < req.min_tokens
        penalised = self._written and (req.presence_penalty or req.frequency_penalty)
        if self._bias is None and not no_end and not penalised:
            return logits
        shaped = logits.copy()
        if self._bias is not None:
            shaped[self._bias[0]] += self._bias[1]
        if penalised:
            ids = np.fromiter(self._written.keys(), dtype=np.int64)
            counts = np.fromiter(self._written.values(), dtype=np.float32)
            shaped[ids] -= req.frequency_penalty * counts + req.presence_penalty
        if no_end:
            shaped[self._eog] = -np.inf
        return shaped

    def _sample(self, shaped: np.ndarray) -> int:
        scaled = shaped.astype(np.float64) / self._req.temperature
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        if self._req.top_p < 1:
            order = np.argsort(-probs)
            keep = order[: int(np.searchsorted(np.cumsum(probs[order]), self._req.top_p)) + 1]
            return int(self._rng.choice(keep, p=probs[keep] / probs[keep].sum()))
        return int(self._rng.choice(probs.size, p=probs))

    def _logprobs(self, logits: np.ndarray, token: int) -> tuple[float, list[tuple[int, float]]]:
        peak = float(logits.max())
        norm = peak + float(np.log(np.exp(logits.astype(np.float64) - peak).sum()))
        top: list[tuple[int, float]] = []
        if self._top:
            best = np.argpartition(-logits, self._top)[: self._top]
            top = sorted(((int(t), float(logits[t]) - norm) for t in best), key=lambda pair: -pair[1])
        return float(logits[token]) - norm, top


def _bias(logit_bias: dict[int, float] | None, n_vocab: int) -> tuple[np.ndarray, np.ndarray] | None:
    if not logit_bias:
        return None
    outside = [t for t in logit_bias if not 0 <= int(t) < n_vocab]
    if outside:
        raise InvalidRequest(f"logit_bias names token ids outside the vocabulary of {n_vocab}: {outside[:5]}",
                             param="logit_bias")
    return (np.fromiter((int(t) for t in logit_bias), dtype=np.int64),
            np.fromiter(logit_bias.values(), dtype=np.float32))
