"""The /v1/colm/stats body: the proxies' per-server counters with the ledger's per-key ones."""

from __future__ import annotations

TOTAL_FIELDS = ("upstream_calls", "coalesced", "cache_hits", "retries", "server_tokens", "cost_usd")
EMPTY_ROW = {"requests": 0, "server_tokens": 0, "client_tokens": 0, "cost_usd": 0.0, "upstream_calls": 0}


def merge_stats(keys: dict[str, dict], servers: dict[str, dict], *, only: str | None = None) -> dict:
    """Everything, or with `only` one key's view: its own row, and of each server only that
    key's counters (another key's traffic is not its business)."""
    if only is not None:
        keys = {only: keys.get(only, dict(EMPTY_ROW))}
        servers = {name: _one_key(server, only) for name, server in servers.items()}
    merged = {label: {**row, "upstream_calls": 0} for label, row in keys.items()}
    for server in servers.values():
        for label, per_key in (server.get("keys") or {}).items():
            row = merged.setdefault(label, dict(EMPTY_ROW))
            row["upstream_calls"] += int(per_key.get("upstream_calls", 0))
    totals = {f: sum(s.get(f, 0) for s in servers.values()) for f in TOTAL_FIELDS}
    totals["cost_usd"] = round(totals["cost_usd"], 8)
    return {"servers": servers, "keys": merged, "totals": totals}


def _one_key(server: dict, label: str) -> dict:
    mine = (server.get("keys") or {}).get(label, {})
    return {"breaker": server.get("breaker"), **{f: mine.get(f, 0) for f in TOTAL_FIELDS}, "keys": {label: mine} if mine else {}}
