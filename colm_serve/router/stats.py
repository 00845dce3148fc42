"""Per-client-app counters kept by the router, merged with the proxies' per-server counters."""

from __future__ import annotations

from collections import defaultdict

from colm_serve.protocol import Usage

TOTAL_FIELDS = ("upstream_calls", "coalesced", "cache_hits", "retries", "server_tokens", "cost_usd")


class KeyStats:
    def __init__(self) -> None:
        self._requests: dict[str, int] = defaultdict(int)
        self._usage: dict[str, Usage] = defaultdict(Usage)

    def record(self, label: str, usage: Usage) -> None:
        self._requests[label] += 1
        self._usage[label] = self._usage[label] + usage

    def merge(self, servers: dict[str, dict]) -> dict:
        """The /v1/colm/stats body: servers as the proxies report them, keys, and totals."""
        keys: dict[str, dict] = {}
        for label, count in self._requests.items():
            u = self._usage[label]
            keys[label] = {
                "requests": count,
                "server_tokens": u.server_tokens,
                "client_tokens": u.client_tokens,
                "cost_usd": round(u.cost_usd, 8),
                "upstream_calls": 0,
            }
        for server in servers.values():
            for label, per_key in (server.get("keys") or {}).items():
                keys.setdefault(label, {"requests": 0, "server_tokens": 0, "client_tokens": 0, "cost_usd": 0.0, "upstream_calls": 0})
                keys[label]["upstream_calls"] += int(per_key.get("upstream_calls", 0))
        totals = {f: sum(s.get(f, 0) for s in servers.values()) for f in TOTAL_FIELDS}
        totals["cost_usd"] = round(totals["cost_usd"], 8)
        return {"servers": servers, "keys": keys, "totals": totals}
