"""The collaboration strategies a CoLM router offers: GET /v1/colm/strategies.

`colm-eval generate --strategy NAME` checks the name here before asking any question, and
`make eval-demo` runs one output per strategy. An endpoint without the route (another
server, or a router from before strategies) answers 404: that is "no strategies", not an error.
"""

from __future__ import annotations

from typing import Any

import openai
from pydantic import BaseModel, ConfigDict, Field

from clients.eval.config import Endpoint


class StrategyCard(BaseModel):
    model_config = ConfigDict(extra="allow")  # descriptions, options: shown, not needed here

    name: str


class StrategyList(BaseModel):
    model_config = ConfigDict(extra="allow")

    strategies: list[StrategyCard] = Field(default_factory=list)
    default: str | None = None

    def names(self) -> list[str]:
        return [s.name for s in self.strategies]


async def list_strategies(endpoint: Endpoint) -> StrategyList | None:
    """The router's strategies, or None when the endpoint has no such route (404)."""
    sdk = openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, timeout=30.0, max_retries=2)
    try:
        body: Any = await sdk.get("/colm/strategies", cast_to=object)
    except openai.NotFoundError:
        return None
    finally:
        await sdk.close()
    return StrategyList.model_validate(body)


async def check_strategy(endpoint: Endpoint, strategy: str) -> None:
    """A ValueError naming the strategies on offer when `strategy` is not one of them."""
    offered = await list_strategies(endpoint)
    if offered is None:
        raise ValueError(f"--strategy {strategy}: {endpoint.base_url} has no /colm/strategies (not a CoLM router "
                         "with strategies)")
    if strategy not in offered.names():
        raise ValueError(f"--strategy {strategy!r} is not offered by {endpoint.base_url}; "
                         f"available strategies are: {', '.join(offered.names()) or 'none'}")
