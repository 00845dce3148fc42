"""What a request may cost upstream, before it runs, and what the server alone would have cost.

Bounds are deliberately conservative (every output cap written in full, drafts at their
longest, the highest price among the specialists that could be picked): a budget should
refuse a request it might not afford rather than overrun. The baseline is an estimate too
(4 characters a token): the router does not have the server's tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from colm_serve.accounting.ledger import Estimate
from colm_serve.config import AppArgs, SpecialistConfig
from colm_serve.server_proxy.limits import CHARS_PER_TOKEN, message_tokens


@dataclass
class Bound:
    """Adds up server calls' worst cases; the guidance calls are counted apart, so a budget
    that cannot pay for all of them can degrade to fewer specialists."""

    tokens: int = 0
    cost: float = 0.0
    per_specialist_tokens: int = 0
    per_specialist_cost: float = 0.0
    specialists: int = 0
    _calls: list[str] = field(default_factory=list)

    def call(self, spec: SpecialistConfig, messages: list[dict], max_tokens: int, *, times: int = 1) -> "Bound":
        prompt = message_tokens(messages)
        self.tokens += times * (prompt + max_tokens)
        self.cost += times * spec.cost(prompt, max_tokens)
        return self

    def specialist_calls(self, spec: SpecialistConfig, messages: list[dict], max_tokens: int, *, k: int) -> "Bound":
        prompt = message_tokens(messages)
        self.per_specialist_tokens = prompt + max_tokens
        self.per_specialist_cost = spec.cost(prompt, max_tokens)
        self.specialists = k
        return self

    def estimate(self) -> Estimate:
        return Estimate(
            server_tokens=self.tokens + self.specialists * self.per_specialist_tokens,
            cost_usd=round(self.cost + self.specialists * self.per_specialist_cost, 10),
            per_specialist_tokens=self.per_specialist_tokens,
            per_specialist_cost=self.per_specialist_cost,
            specialists=self.specialists,
        )


def priciest(args: AppArgs) -> SpecialistConfig:
    """A stand-in for "whichever specialist is picked": the highest prices among them all."""
    return args.specialists[0].model_copy(update={
        "name": "priciest",
        "price_in_per_m": max(s.price_in_per_m for s in args.specialists),
        "price_cached_in_per_m": None,
        "price_out_per_m": max(s.price_out_per_m for s in args.specialists),
        "system_prompt": max((s.system_prompt for s in args.specialists), key=len),
    })


def longest_text(tokens: int) -> str:
    """Placeholder text as long as `tokens` at the estimate's own rate, for bounding prompts."""
    return "x" * (tokens * CHARS_PER_TOKEN)


def server_alone(spec: SpecialistConfig, messages: list[dict], max_tokens: int) -> Estimate:
    return Bound().call(spec, messages, max_tokens).estimate()


def baseline_cost(spec: SpecialistConfig, messages: list[dict], answer: str) -> float:
    """What `spec` alone would have charged: these messages in, an answer this long out."""
    return round(spec.cost(message_tokens(messages), len(answer) // CHARS_PER_TOKEN), 10)
