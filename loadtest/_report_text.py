"""The summary as cells, shared by the text table (terminal) and the HTML table."""

from __future__ import annotations

from loadtest._report_data import ServerUse, Summary

SUMMARY_HEADER = ["model", "requests", "failures", "answers/s", "p50 s", "p95 s", "p99 s", "TTFT p50 s",
                  "TTFT p95 s", "server tok/answer", "client tok/answer", "USD/1k answers"]
UPSTREAM_HEADER = ["server", "sent upstream", "coalesced", "cache hits", "retries", "coalescing rate",
                   "cache hit rate", "server tokens", "cost USD"]


def _s(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f}"


def _n(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def summary_cells(row: Summary) -> list[str]:
    cost = None if row.cost_usd_per_answer is None else row.cost_usd_per_answer * 1000
    return [row.model, str(row.requests), str(row.failures), f"{row.answers_per_s:.3f}", _s(row.p50_ms), _s(row.p95_ms),
            _s(row.p99_ms), _s(row.ttft_p50_ms), _s(row.ttft_p95_ms), _n(row.server_tokens_per_answer),
            _n(row.client_tokens_per_answer), _n(cost, 4)]


def upstream_cells(use: ServerUse) -> list[str]:
    return [use.server, str(use.upstream_calls), str(use.coalesced), str(use.cache_hits), str(use.retries),
            f"{use.coalescing_rate:.1%}", f"{use.cache_hit_rate:.1%}", f"{use.server_tokens:,}", f"{use.cost_usd:.6f}"]


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def headline(rows: list[Summary], uses: list[ServerUse]) -> str:
    """The one line to read first."""
    if not rows:
        return "No requests were recorded."
    total = rows[-1]
    text = (f"{total.requests - total.failures} answers, {total.failures} failures, "
            f"{total.answers_per_s:.2f} answers/s, p50 {_s(total.p50_ms)} s, p95 {_s(total.p95_ms)} s, "
            f"USD {_n((total.cost_usd_per_answer or 0) * 1000, 4)} per 1,000 answers")
    calls = sum(u.upstream_calls - u.retries + u.coalesced + u.cache_hits for u in uses)
    if calls:
        saved = sum(u.coalesced + u.cache_hits for u in uses)
        text += f"; {saved / calls:.1%} of upstream calls saved by coalescing and the cache"
    return text + "."


def summary_text(rows: list[Summary], uses: list[ServerUse], errors: dict[str, int]) -> str:
    parts = ["CoLM load test summary (answers = successful requests; latency of answers only)",
             headline(rows, uses), ""]
    parts.append(text_table(SUMMARY_HEADER, [summary_cells(r) for r in rows]) if rows else "no requests recorded")
    if uses:
        parts += ["", "Upstream servers during the run (from /v1/colm/stats)",
                  text_table(UPSTREAM_HEADER, [upstream_cells(u) for u in uses])]
    if errors:
        parts += ["", "Failures"] + [f"  {count:5d}  {what}" for what, count in errors.items()]
    return "\n".join(parts)
