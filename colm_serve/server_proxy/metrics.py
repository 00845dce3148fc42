"""Prometheus metrics behind a small sink, so the plain ServerProxy runs without Ray.

The deployment passes `RayMetricsSink` (Ray Serve's metrics API, scraped with the rest of
Serve's metrics); tests and scripts get `NullSink`. Tags are the server and the client
label, never a key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
    """Counters and gauges through `ray.serve.metrics`; `module` lets tests pass a fake. The
    defaults are the server proxy's; the router passes its own names and tags."""

    def __init__(self, *, module: Any = None, prefix: str = PREFIX, counters: dict[str, str] = COUNTERS,
                 gauges: dict[str, str] = GAUGES, tag_keys: tuple[str, ...] = TAG_KEYS) -> None:
        if module is None:
            from ray.serve import (
                metrics as module,  # imported here: only a deployment needs Ray
            )
        self._counters = {n: module.Counter(prefix + n, description=d, tag_keys=tag_keys) for n, d in counters.items()}
        self._gauges = {n: module.Gauge(prefix + n, description=d, tag_keys=tag_keys) for n, d in gauges.items()}

    def count(self, name: str, value: float, *, tags: dict[str, str]) -> None:
        if value > 0:  # Ray's Counter refuses increments of zero
            self._counters[name].inc(value, tags=dict(tags))

    def gauge(self, name: str, value: float, *, tags: dict[str, str]) -> None:
        self._gauges[name].set(value, tags=dict(tags))


class BufferedSink:
    """Adds counts up in memory and hands them to `sink` at most every `interval_s`; gauges
    keep their last value. A Prometheus scrape comes every few seconds, and recording every
    increment through Ray's metrics cost the hot path a few percent of its CPU."""

    def __init__(self, sink: MetricsSink, *, interval_s: float = 1.0) -> None:
        self._sink, self._interval_s = sink, interval_s
        self._counts: dict[tuple[str, tuple], float] = {}
        self._gauges: dict[tuple[str, tuple], float] = {}
        self._scheduled = False

    def count(self, name: str, value: float, *, tags: dict[str, str]) -> None:
        key = (name, tuple(sorted(tags.items())))
        self._counts[key] = self._counts.get(key, 0) + value
        self._later()

    def gauge(self, name: str, value: float, *, tags: dict[str, str]) -> None:
        self._gauges[(name, tuple(sorted(tags.items())))] = value
        self._later()

    def flush(self) -> None:
        self._scheduled = False
        counts, gauges, self._counts, self._gauges = self._counts, self._gauges, {}, {}
        for (name, tags), value in counts.items():
            self._sink.count(name, value, tags=dict(tags))
        for (name, tags), value in gauges.items():
            self._sink.gauge(name, value, tags=dict(tags))

    def _later(self) -> None:
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to wait in: hand it over now
            self.flush()
            return
        self._scheduled = True
        loop.call_later(self._interval_s, self.flush)


def ray_sink() -> MetricsSink:
    return BufferedSink(RayMetricsSink())


METRICS_SINKS: dict[str, Callable[[], MetricsSink]] = {"null": NullSink, "ray": ray_sink}
