"""What a request is billed for its upstream calls."""

from __future__ import annotations

from colm_serve.protocol import Usage
from colm_serve.server_proxy.types import UpstreamReply


def billed_usage(reply: UpstreamReply) -> Usage:
    """Tokens this request caused upstream: a cache hit or a coalesced follower caused none."""
    if reply.cached or reply.coalesced:
        return Usage()
    return Usage(
        server_prompt_tokens=reply.prompt_tokens,
        server_completion_tokens=reply.completion_tokens,
        cost_usd=reply.cost_usd,
    )
