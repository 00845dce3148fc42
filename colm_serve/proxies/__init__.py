"""ServerProxy: the only place that talks to an upstream server.

The plain `Gateway` holds every mechanism (fairness, limits, retries, breaker, coalescing,
cache, stats) and needs no Ray; `ServerProxy` is the thin class the app builder deploys.
"""

from colm_serve.proxies.deployment import ServerProxy
from colm_serve.proxies.gateway import Gateway
from colm_serve.proxies.types import UpstreamCall, UpstreamDelta, UpstreamReply

__all__ = ["Gateway", "ServerProxy", "UpstreamCall", "UpstreamDelta", "UpstreamReply"]
