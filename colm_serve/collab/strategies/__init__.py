"""Collaboration strategies behind one interface, chosen per request (`colm.strategy`) or by
config (`collaboration.strategy`); GET /v1/colm/strategies lists them with their steps."""

from __future__ import annotations

from colm_serve.collab.steps import Steps
from colm_serve.collab.strategies.base import Strategy
from colm_serve.collab.strategies.cascade import Cascade
from colm_serve.collab.strategies.guide import Guide
from colm_serve.collab.strategies.shepherd import Shepherd

STRATEGIES: dict[str, type[Strategy]] = {"guide": Guide, "shepherd": Shepherd, "cascade": Cascade}


def build_strategies(steps: Steps) -> dict[str, Strategy]:
    built = {name: cls(steps) for name, cls in STRATEGIES.items()}
    default = steps.args.collaboration.strategy
    if default not in built:
        raise ValueError(f"collaboration.strategy: unknown strategy {default!r}; available: {sorted(built)}")
    return built
