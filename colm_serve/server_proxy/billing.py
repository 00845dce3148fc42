"""Who pays for each upstream request: every attempt is billed to the client app that caused it.

- A reply carries `billed`: its own usage plus what the attempts before it cost (an attempt
  that timed out was most likely run to its end, and billed, by the provider).
- Coalesced callers share one request: each caller that received the reply pays an equal
  share. A leader that left before the reply landed pays nothing; its followers share it all.
- Spend no caller will hear of (every caller left mid-request, a stream its reader
  abandoned) goes to `spend_sink` under the label of the client app that started it, so the
  day's totals and budgets still see it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from colm_serve.protocol.usage import Usage
from colm_serve.server_proxy.coalesce import Landed
from colm_serve.server_proxy.limits import message_tokens
from colm_serve.server_proxy.retry import AttemptMeter
from colm_serve.server_proxy.stats import ProxyStats
from colm_serve.server_proxy.types import UpstreamCall, UpstreamReply

logger = logging.getLogger("colm_serve.server_proxy")
SpendSink = Callable[[str, Usage], Awaitable[None]]


def worst_case(call: UpstreamCall) -> Usage:
    """An attempt we cannot see the end of: its prompt and its whole output cap, estimated."""
    return call.spend(message_tokens(call.messages), call.output_bound(), estimated=True)


def share(usage: Usage, parts: int) -> Usage:
    """One of `parts` equal shares (tokens rounded; they add up to within `parts` tokens)."""
    if parts <= 1:
        return usage
    return Usage(
        server_prompt_tokens=round(usage.server_prompt_tokens / parts),
        server_cached_prompt_tokens=round(usage.server_cached_prompt_tokens / parts),
        server_completion_tokens=round(usage.server_completion_tokens / parts),
        server_estimated_tokens=round(usage.server_estimated_tokens / parts),
        cost_usd=round(usage.cost_usd / parts, 10),
    )


class Billing:
    def __init__(self, stats: ProxyStats, sink: SpendSink | None = None) -> None:
        self._stats, self._sink = stats, sink
        self._writes: set[asyncio.Task] = set()  # strong references until they land

    def meter(self, call: UpstreamCall) -> AttemptMeter:
        return AttemptMeter(estimate=lambda: worst_case(call))

    def landed(self, reply: UpstreamReply, landed: Landed) -> UpstreamReply:
        """The reply as this caller of a coalesced flight gets it: its share of the bill."""
        if landed.shared <= 1 and not landed.joined:
            return reply
        billed = share(reply.billed, landed.shared)
        return reply.model_copy(update={"billed": billed, "cost_usd": billed.cost_usd, "coalesced": landed.joined})

    def unclaimed(self, client: str, usage: Usage) -> None:
        """Spend that no caller will be billed for through a reply: counted here, recorded there."""
        if not usage.server_tokens:
            return
        self._stats.add(client, server_tokens=usage.server_tokens, cost_usd=usage.cost_usd)
        if self._sink is None:
            logger.warning("no spend sink: %s tokens spent for %s go unrecorded in the ledger", usage.server_tokens, client)
            return
        task = asyncio.ensure_future(self._sink(client, usage))
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("recording unclaimed upstream spend failed", exc_info=task.exception())

    async def aclose(self) -> None:
        """Waits for the writes under way, then closes the sink if it holds a store."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        close = getattr(self._sink, "aclose", None)
        if close is not None:
            await close()
