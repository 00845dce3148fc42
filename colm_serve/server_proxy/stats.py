"""Counters per server and per client label, mirrored into the metrics sink.

Client labels come from the router (a key's name, never the key), so nothing here can leak one.
"""

from __future__ import annotations

from typing import Any

from colm_serve.server_proxy.metrics import ALL_CLIENTS, COUNTERS, MetricsSink, NullSink

BREAKER_LEVEL = {"closed": 0, "half_open": 1, "open": 2}


def _zero() -> dict[str, float]:
    return {name: (0.0 if name == "cost_usd" else 0) for name in COUNTERS}


class ProxyStats:
    def __init__(self, server: str, *, sink: MetricsSink | None = None) -> None:
        self.server = server
        self._sink = sink or NullSink()
        self._totals = _zero()
        self._keys: dict[str, dict[str, float]] = {}

    def add(self, client: str, **amounts: float) -> None:
        """Add to named counters for the server and for `client`."""
        per_key = self._keys.setdefault(client, _zero())
        tags = {"server": self.server, "client": client}
        for name, value in amounts.items():
            if not value:
                continue
            self._totals[name] += value
            per_key[name] += value
            self._sink.count(name, value, tags=tags)

    def gauge(self, name: str, value: float) -> None:
        self._sink.gauge(name, value, tags={"server": self.server, "client": ALL_CLIENTS})

    def total(self, name: str) -> float:
        return self._totals[name]

    def snapshot(self, *, queue_depth: int, in_flight: int, max_concurrency: int, breaker: str) -> dict[str, Any]:
        """The per-server entry of /v1/colm/stats, plus a `keys` dict per client label."""
        return {
            **self._totals,
            "queue_depth": queue_depth,
            "in_flight": in_flight,
            "max_concurrency": max_concurrency,
            "breaker": breaker,
            "keys": {client: dict(counts) for client, counts in self._keys.items()},
        }
