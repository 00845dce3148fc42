"""Prometheus metrics behind a small sink, so the plain ServerProxy runs without Ray.

The deployment passes `RayMetricsSink` (Ray Serve's metrics API, scraped with the rest of
Serve's metrics); tests and scripts get `NullSink`. Tags are the server and the client
label, never a key.
"""

from __future__ import annotations

from typing import Any, Protocol

PREFIX = "colm_proxy_"
TAG_KEYS = ("server", "client")
ALL_CLIENTS = "_all"  # the client tag of per-server gauges

COUNTERS = {
    "requests": "Calls received, per client label.",
    "upstream_calls": "HTTP requests actually sent upstream (retries included).",
    "retries": "Upstream attempts after the first.",
    "coalesced": "Calls answered by sharing another call's upstream request.",
    "cache_hits": "Calls answered from the response cache.",
    "errors": "Calls that ended in an error.",
    "server_tokens": "Prompt plus completion tokens spent upstream.",
    "saved_tokens": "Tokens not spent upstream thanks to the cache and coalescing.",
    "cost_usd": "Upstream cost in USD.",
}
GAUGES = {
    "queue_depth": "Calls waiting for an upstream slot.",
    "in_flight": "Calls holding an upstream slot.",
    "breaker_state": "Circuit breaker: 0 closed, 1 half-open, 2 open.",
}


class MetricsSink(Protocol):
    def count(self, name: str, value: float, *, tags: dict[str, str]) -> None: ...

    def gauge(self, name: str, value: float, *, tags: dict[str, str]) -> None: ...


class NullSink:
    def count(self, name: str, value: float, *, tags: dict[str, str]) -> None:
        return None

    def gauge(self, name: str, value: float, *, tags: dict[str, str]) -> None:
        return None


class RayMetricsSink:
    """Counters and gauges through `ray.serve.metrics`; `module` lets tests pass a fake."""

    def __init__(self, *, module: Any = None) -> None:
        if module is None:
            from ray.serve import (
                metrics as module,  # imported here: only a deployment needs Ray
            )
        self._counters = {n: module.Counter(PREFIX + n, description=d, tag_keys=TAG_KEYS) for n, d in COUNTERS.items()}
        self._gauges = {n: module.Gauge(PREFIX + n, description=d, tag_keys=TAG_KEYS) for n, d in GAUGES.items()}

    def count(self, name: str, value: float, *, tags: dict[str, str]) -> None:
        if value > 0:  # Ray's Counter refuses increments of zero
            self._counters[name].inc(value, tags=dict(tags))

    def gauge(self, name: str, value: float, *, tags: dict[str, str]) -> None:
        self._gauges[name].set(value, tags=dict(tags))


METRICS_SINKS: dict[str, type] = {"null": NullSink, "ray": RayMetricsSink}
