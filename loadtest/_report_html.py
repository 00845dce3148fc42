"""One self-contained HTML page: tables, and the plots inlined as base64 PNGs."""

from __future__ import annotations

import html
import time

from loadtest._report_text import SUMMARY_HEADER, UPSTREAM_HEADER

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.all td { font-weight: bold; background: #f4f4f4; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; }
.bad { color: #b00; }
"""

NOTES = {
    "latency": "End-to-end latency of successful requests by completion time (p50 solid, p95 dashed), "
               "and answers and failures per second in the same windows.",
    "ttft": "Time to first token of streamed answers: when the first content token arrived.",
    "cost": "Mean server tokens and cost per successful request (answer), from the response's colm.usage.",
    "upstream": "From /v1/colm/stats sampled during the run: calls sent upstream versus answered by "
                "coalescing or the cache (saved calls), and in-flight calls as a share of each server's limit.",
}


def _table(header: list[str], rows: list[list[str]], *, bold_last: bool = False) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="all"' if bold_last and i == len(rows) - 1 else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _figure(title: str, png_b64: str, note: str) -> str:
    return (f"<h2>{html.escape(title)}</h2><p class='note'>{html.escape(note)}</p>"
            f"<img alt='{html.escape(title)}' src='data:image/png;base64,{png_b64}'>")


def _settings_line(settings: dict | None) -> str:
    if not settings:
        return ""
    text = ", ".join(f"{k}={v}" for k, v in settings.items())
    return f"<p class='note'>Options: {html.escape(text)}</p>"


def render(
    *,
    prefix: str,
    headline: str,
    settings: dict | None,
    summary_rows: list[list[str]],
    upstream_rows: list[list[str]],
    errors: dict[str, int],
    stats_errors: list[str],
    plots: dict[str, str],
) -> str:
    """`plots` maps "latency", "ttft", "cost", "upstream" to base64 PNGs."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>CoLM load test: {html.escape(prefix)}</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<h1>CoLM load test report</h1><p class='note'>{html.escape(prefix)} · "
             f"written {time.strftime('%Y-%m-%d %H:%M:%S')}</p>",
             f"<h2>Summary</h2><p><b>{html.escape(headline)}</b></p>",
             _settings_line(settings),
             _table(SUMMARY_HEADER, summary_rows, bold_last=True) if summary_rows else "<p class='bad'>No requests.</p>"]
    if errors:
        parts.append("<h3 class='bad'>Failures</h3>" + _table(["model: error", "count"],
                                                               [[k, str(v)] for k, v in errors.items()]))
    titles = {"latency": "Latency and throughput over time", "ttft": "Time to first token",
              "cost": "Server tokens and cost per answer, by model", "upstream": "Upstream servers"}
    for key, title in titles.items():
        if key in plots:
            parts.append(_figure(title, plots[key], NOTES[key]))
    if upstream_rows:
        parts.append(_table(UPSTREAM_HEADER, upstream_rows))
    for error in stats_errors:
        parts.append(f"<p class='bad'>/v1/colm/stats: {html.escape(error)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
