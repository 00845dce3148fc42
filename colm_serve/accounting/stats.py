"""The /v1/colm/stats body: the proxies' per-server counters with the ledger's per-key ones."""

from __future__ import annotations

TOTAL_FIELDS = ("upstream_calls", "coalesced", "cache_hits", "retries", "server_tokens", "cost_usd")


def merge_stats(keys: dict[str, dict], servers: dict[str, dict]) -> dict:
    merged = {label: {**row, "upstream_calls": 0} for label, row in keys.items()}
    for server in servers.values():
        for label, per_key in (server.get("keys") or {}).items():
            row = merged.setdefault(label, {"requests": 0, "server_tokens": 0, "client_tokens": 0, "cost_usd": 0.0, "upstream_calls": 0})
            row["upstream_calls"] += int(per_key.get("upstream_calls", 0))
    totals = {f: sum(s.get(f, 0) for s in servers.values()) for f in TOTAL_FIELDS}
    totals["cost_usd"] = round(totals["cost_usd"], 8)
    return {"servers": servers, "keys": merged, "totals": totals}
