"""Numbers for the report: per-model summaries from the request rows, and what the
upstream servers did during the run (the difference of two /v1/colm/stats samples).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from loadtest._records import RequestRecord

COUNTERS = ("upstream_calls", "coalesced", "cache_hits", "retries", "server_tokens", "cost_usd")


class Summary(BaseModel):
    """One row of the summary table: a model, or "all"."""

    model_config = ConfigDict(extra="forbid")

    model: str
    requests: int
    failures: int
    answers_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    server_tokens_per_answer: float | None
    client_tokens_per_answer: float | None
    cost_usd_per_answer: float | None


class ServerUse(BaseModel):
    """Counters of one upstream server over the run, and its share of calls saved."""

    model_config = ConfigDict(extra="forbid")

    server: str
    upstream_calls: int
    coalesced: int
    cache_hits: int
    retries: int
    server_tokens: int
    cost_usd: float
    coalescing_rate: float
    cache_hit_rate: float


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def run_window(records: list[RequestRecord]) -> tuple[float, float]:
    """(first start, last completion), the span throughput is measured over."""
    start = min(r.start_time for r in records)
    end = max(r.start_time + r.e2e_ms / 1000 for r in records)
    return start, max(end, start + 1e-3)


def summarize(model: str, rows: list[RequestRecord], *, duration_s: float) -> Summary:
    ok = [r for r in rows if r.ok]
    e2e = [r.e2e_ms for r in ok]
    ttft = [r.ttft_ms for r in ok if r.ttft_ms is not None]
    return Summary(
        model=model, requests=len(rows), failures=len(rows) - len(ok), answers_per_s=len(ok) / duration_s,
        p50_ms=percentile(e2e, 50), p95_ms=percentile(e2e, 95), p99_ms=percentile(e2e, 99),
        ttft_p50_ms=percentile(ttft, 50), ttft_p95_ms=percentile(ttft, 95),
        server_tokens_per_answer=mean([r.server_tokens or 0 for r in ok]),
        client_tokens_per_answer=mean([r.client_tokens or 0 for r in ok]),
        cost_usd_per_answer=mean([r.cost_usd or 0.0 for r in ok]),
    )


def summaries(records: list[RequestRecord]) -> list[Summary]:
    """Per model (sorted), then the "all" row."""
    if not records:
        return []
    start, end = run_window(records)
    models = sorted({r.model for r in records})
    rows = [summarize(m, [r for r in records if r.model == m], duration_s=end - start) for m in models]
    return rows + [summarize("all", records, duration_s=end - start)]


def load_stats(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def server_use(stats: dict[str, Any] | None) -> list[ServerUse]:
    """Stop sample minus start sample, per server; empty when fewer than two samples."""
    samples = (stats or {}).get("samples") or []
    if len(samples) < 2:
        return []
    before, after = samples[0]["stats"].get("servers", {}), samples[-1]["stats"].get("servers", {})
    return [_use(name, before.get(name, {}), counters) for name, counters in sorted(after.items())]


def _use(name: str, before: dict[str, Any], after: dict[str, Any]) -> ServerUse:
    d = {k: (after.get(k) or 0) - (before.get(k) or 0) for k in COUNTERS}
    # Logical calls: what the router asked for. Retries are extra HTTP requests, not asks.
    logical = d["upstream_calls"] - d["retries"] + d["coalesced"] + d["cache_hits"]
    return ServerUse(server=name, upstream_calls=d["upstream_calls"], coalesced=d["coalesced"],
                     cache_hits=d["cache_hits"], retries=d["retries"], server_tokens=d["server_tokens"],
                     cost_usd=round(d["cost_usd"], 8),
                     coalescing_rate=d["coalesced"] / logical if logical > 0 else 0.0,
                     cache_hit_rate=d["cache_hits"] / logical if logical > 0 else 0.0)


def utilisation_series(stats: dict[str, Any] | None) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """Per server: (seconds since the first sample, in_flight / max_concurrency, queue_depth)."""
    samples = (stats or {}).get("samples") or []
    if not samples:
        return {}
    t0 = samples[0]["t"]
    series: dict[str, tuple[list[float], list[float], list[float]]] = {}
    for sample in samples:
        for name, s in sample["stats"].get("servers", {}).items():
            t, util, queue = series.setdefault(name, ([], [], []))
            t.append(sample["t"] - t0)
            util.append((s.get("in_flight") or 0) / max(s.get("max_concurrency") or 1, 1))
            queue.append(float(s.get("queue_depth") or 0))
    return series


def error_counts(records: list[RequestRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        if r.error:
            counts[f"{r.model}: {r.error}"] = counts.get(f"{r.model}: {r.error}", 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))
