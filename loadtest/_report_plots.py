"""The report's plots as base64 PNGs (matplotlib's Figure API: no pyplot, no global backend)."""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib.figure import Figure

from loadtest._records import RequestRecord
from loadtest._report_data import ServerUse, Summary, run_window


def to_png_base64(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def _windows(records: list[RequestRecord]) -> tuple[float, np.ndarray]:
    """Window width (~30 windows, at least 1 s) and window edges in seconds since the start."""
    start, end = run_window(records)
    width = max(1.0, (end - start) / 30)
    return width, np.arange(0.0, end - start + width, width)


def latency_over_time(records: list[RequestRecord]) -> Figure:
    """p50/p95 end-to-end latency and answers/failures per second, by completion time."""
    fig = Figure(figsize=(10, 6))
    top, bottom = fig.subplots(2, 1, sharex=True)
    if not records:
        _empty(top, "no requests")
        return fig
    start, _ = run_window(records)
    width, edges = _windows(records)
    done = np.array([r.start_time + r.e2e_ms / 1000 - start for r in records])
    ok = np.array([r.ok for r in records])
    e2e = np.array([r.e2e_ms / 1000 for r in records])
    idx = np.clip(np.digitize(done, edges) - 1, 0, len(edges) - 2)
    mids = edges[:-1] + width / 2
    for q, style in ((50, "-o"), (95, "--s")):
        values = [np.percentile(e2e[(idx == i) & ok], q) if ((idx == i) & ok).any() else np.nan for i in range(len(mids))]
        top.plot(mids, values, style, markersize=3, label=f"p{q}")
    top.set_ylabel("end-to-end latency (s)")
    top.legend()
    top.grid(alpha=0.3)
    bottom.bar(mids, [((idx == i) & ok).sum() / width for i in range(len(mids))], width=width * 0.9, label="answers/s")
    bottom.bar(mids, [((idx == i) & ~ok).sum() / width for i in range(len(mids))], width=width * 0.9,
               color="tab:red", label="failures/s")
    bottom.set_xlabel("seconds since the first request")
    bottom.set_ylabel("throughput (1/s)")
    bottom.legend()
    bottom.grid(alpha=0.3)
    fig.suptitle("Latency percentiles and throughput over time")
    return fig


def ttft_distribution(records: list[RequestRecord]) -> Figure:
    fig = Figure(figsize=(10, 4))
    ax = fig.subplots()
    by_model = {}
    for r in records:
        if r.ok and r.ttft_ms is not None:
            by_model.setdefault(r.model, []).append(r.ttft_ms / 1000)
    if not by_model:
        _empty(ax, "no streamed answers (set --stream-ratio above 0)")
        return fig
    bins = np.histogram_bin_edges(np.concatenate([np.array(v) for v in by_model.values()]), bins=30)
    for model, values in sorted(by_model.items()):
        ax.hist(values, bins=bins, alpha=0.6, label=f"{model} (n={len(values)})")
    ax.set_xlabel("time to first token (s)")
    ax.set_ylabel("streamed answers")
    ax.set_title("TTFT distribution")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def cost_by_model(rows: list[Summary]) -> Figure:
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    models = [r for r in rows if r.model != "all" and r.cost_usd_per_answer is not None]
    if not models:
        _empty(left, "no answers")
        return fig
    names = [r.model for r in models]
    left.bar(names, [r.server_tokens_per_answer for r in models], color="tab:purple")
    left.set_title("server tokens per answer")
    right.bar(names, [r.cost_usd_per_answer * 1000 for r in models], color="tab:green")
    right.set_title("cost per 1,000 answers (USD)")
    for ax in (left, right):
        ax.tick_params(axis="x", rotation=20)
        ax.grid(alpha=0.3, axis="y")
    return fig


def upstream(uses: list[ServerUse], series: dict[str, tuple[list[float], list[float], list[float]]]) -> Figure:
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    if uses:
        names = [u.server for u in uses]
        sent = np.array([u.upstream_calls for u in uses])
        coalesced = np.array([u.coalesced for u in uses])
        left.bar(names, sent, label="sent upstream")
        left.bar(names, coalesced, bottom=sent, label="coalesced")
        left.bar(names, [u.cache_hits for u in uses], bottom=sent + coalesced, label="cache hits")
        left.set_title("upstream calls during the run")
        left.legend()
    else:
        _empty(left, "no /v1/colm/stats samples")
    for name, (t, util, _queue) in sorted(series.items()):
        right.plot(t, [u * 100 for u in util], "-o", markersize=3, label=name)
    if series:
        right.set_ylim(0, 105)
        right.set_xlabel("seconds since test start")
        right.set_ylabel("in flight / max concurrency (%)")
        right.set_title("upstream utilisation")
        right.legend()
        right.grid(alpha=0.3)
    else:
        _empty(right, "no /v1/colm/stats samples")
    return fig
