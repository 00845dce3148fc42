"""The comparison's numbers per variant, and the ratios between variants."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from loadtest._report_data import Summary
from loadtest._report_text import text_table

# (numerator, denominator): the ratios that answer "what does CoLM cost and buy?"
RATIOS = (("colm", "server"), ("colm-nocache", "server"), ("colm", "colm-nocache"))


class VariantResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    requests: int
    failures: int
    cost_usd_per_answer: float | None
    server_tokens_per_answer: float | None
    p50_s: float | None
    p95_s: float | None
    answers_per_s: float
    exit_code: int = 0

    @classmethod
    def from_summary(cls, name: str, total: Summary, *, exit_code: int) -> "VariantResult":
        return cls(name=name, requests=total.requests, failures=total.failures,
                   cost_usd_per_answer=total.cost_usd_per_answer,
                   server_tokens_per_answer=total.server_tokens_per_answer,
                   p50_s=_seconds(total.p50_ms), p95_s=_seconds(total.p95_ms), answers_per_s=total.answers_per_s,
                   exit_code=exit_code)


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b; None when either is missing or b is zero (a ratio to nothing means nothing)."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def variant_table(results: list[VariantResult]) -> str:
    header = ["variant", "requests", "failures", "USD/1k answers", "server tok/answer", "p50 s", "p95 s", "answers/s"]
    rows = [[r.name, str(r.requests), str(r.failures),
             _fmt(None if r.cost_usd_per_answer is None else r.cost_usd_per_answer * 1000, ".4f"),
             _fmt(r.server_tokens_per_answer, ".1f"), _fmt(r.p50_s, ".2f"), _fmt(r.p95_s, ".2f"),
             _fmt(r.answers_per_s, ".3f")] for r in results]
    return text_table(header, rows)


def ratio_table(results: dict[str, VariantResult]) -> str:
    header = ["ratio", "cost/answer", "server tok/answer", "p50 latency", "p95 latency", "throughput"]
    rows = []
    for a, b in RATIOS:
        if a not in results or b not in results:
            continue
        x, y = results[a], results[b]
        cells = [ratio(x.cost_usd_per_answer, y.cost_usd_per_answer),
                 ratio(x.server_tokens_per_answer, y.server_tokens_per_answer),
                 ratio(x.p50_s, y.p50_s), ratio(x.p95_s, y.p95_s), ratio(x.answers_per_s, y.answers_per_s)]
        rows.append([f"{a} / {b}", *(_fmt(c, ".2f") + ("x" if c is not None else "") for c in cells)])
    return text_table(header, rows)
