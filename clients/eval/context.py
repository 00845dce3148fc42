"""Fit a request's output budget into the model's context: estimate first, settle on the server's figure.

`max_tokens` plus the prompt must fit the model's context, or an OpenAI-compatible server
answers 400. When the context is known (vLLM's and the stand-in's /v1/models list
`max_model_len`), the budget is clamped before sending, on an estimate of the prompt. When
the estimate is short, or the context is unknown, the server's context-length 400 names the
context and the prompt's real token count: the request is sent once more with exactly the
room left. Either way the clamp is logged, never silent.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any

import openai

logger = logging.getLogger("clients.eval")

# Typical English text is ~4 characters a token; judge prompts with code and numbers run lower.
CHARS_PER_TOKEN = 3.5
TOKENS_PER_MESSAGE = 8  # the chat template's role markers
MIN_OUTPUT_TOKENS = 1

# The context-length errors of the servers this talks to, all 400s:
#   stand-in / colm:  "max_tokens=2048 plus the prompt's 455 tokens exceeds the context of 2048 tokens"
#   vLLM:             "... maximum context length is 2048 tokens and your request has 455 input tokens ..."
#   OpenAI, old vLLM: "This model's maximum context length is 2048 tokens. However, you requested 2503
#                      tokens (455 in the messages, 2048 in the completion)."
_LIMIT = re.compile(r"(?:maximum context length is|exceeds the context of) (\d+) tokens")
_PROMPT = re.compile(r"(?:prompt's (\d+) tokens|has (\d+) input tokens|(\d+) in the messages)")


@dataclass(frozen=True)
class ContextOverflow:
    """What a context-length 400 said: the model's context and the prompt's token count."""

    limit: int
    prompt_tokens: int | None


def context_overflow(exc: BaseException) -> ContextOverflow | None:
    """The figures of a context-length 400, or None for any other error."""
    if not isinstance(exc, openai.BadRequestError):
        return None
    text = str(exc)
    limit = _LIMIT.search(text)
    if limit is None:
        return None
    prompt = _PROMPT.search(text)
    count = next((int(g) for g in prompt.groups() if g), None) if prompt else None
    return ContextOverflow(limit=int(limit.group(1)), prompt_tokens=count)


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """A rough token count of a chat prompt, for clamping before the server has said anything."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)


class PromptTooLong(ValueError):
    """The prompt alone fills the model's context: no output budget is left."""


class ContextWindow:
    """One endpoint's context (when known) and the clamps made to fit it, logged once in full."""

    def __init__(self, *, model: str, max_model_len: int | None = None) -> None:
        self.model = model
        self.max_model_len = max_model_len
        self.clamped = 0

    def fit(self, messages: list[dict[str, Any]], requested: int) -> int:
        """The budget to send: `requested`, or less when the known context cannot hold it."""
        if self.max_model_len is None:
            return requested
        prompt = estimate_prompt_tokens(messages)
        room = self.max_model_len - prompt
        if requested <= room:
            return requested
        if room < MIN_OUTPUT_TOKENS:
            raise PromptTooLong(f"{self.model}: the prompt (~{prompt} tokens) leaves no room in the context of "
                                f"{self.max_model_len} tokens")
        self._log(requested, room, f"~{prompt}-token prompt, context {self.max_model_len} from /v1/models")
        return room

    def settle(self, overflow: ContextOverflow, messages: list[dict[str, Any]], sent: int) -> int:
        """The budget to resend after the server's context-length 400, from its own figures
        (the estimate stands in for the prompt's count when the server did not give it)."""
        prompt = overflow.prompt_tokens if overflow.prompt_tokens is not None else estimate_prompt_tokens(messages)
        room = overflow.limit - prompt
        if room < MIN_OUTPUT_TOKENS or room >= sent:
            raise PromptTooLong(f"{self.model}: the prompt ({prompt} tokens) and max_tokens={sent} do not fit the "
                                f"context of {overflow.limit} tokens")
        self.max_model_len = overflow.limit  # later requests clamp before sending
        source = "" if overflow.prompt_tokens is not None else "~"
        self._log(sent, room, f"{source}{prompt}-token prompt, context {overflow.limit} from the server's 400")
        return room

    def _log(self, requested: int, budget: int, why: str) -> None:
        self.clamped += 1
        level = logging.WARNING if self.clamped == 1 else logging.DEBUG
        logger.log(level, "%s: max_tokens %d does not fit (%s): clamped to %d%s", self.model, requested, why,
                   budget, "; further clamps are logged at debug level (-v)" if self.clamped == 1 else "")
