"""Quality and cost per output name, side by side, read back from the files on disk."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from statistics import mean

from pydantic import BaseModel

from clients.eval.config import Bench
from clients.eval.formats import alpaca_eval, arena_hard, fastchat
from clients.eval.formats.jsonio import read_jsonl
from clients.eval.layout import Layout
from clients.eval.usage import AnswerUsage

logger = logging.getLogger("clients.eval")

METRICS = {"mt-bench": "score 1-10", "arena-hard": "win % vs baseline", "alpaca-eval": "win % vs reference"}


class Quality(BaseModel):
    value: float | None = None
    judged: int = 0
    failures: int = 0  # verdicts the judge gave without a readable rating or label


class Row(BaseModel):
    bench: Bench
    name: str
    model: str
    judge: str | None = None
    metric: str
    answers: int
    quality: float | None = None
    judged: int = 0
    parse_failures: int = 0
    cost_usd: float | None = None
    server_tokens: float | None = None
    client_tokens: float | None = None
    completion_tokens: float | None = None
    latency_s: float | None = None


def usage_summary(layout: Layout, name: str) -> dict[str, object]:
    """Means per answer from the usage sidecar; cost and server tokens only where CoLM reported them."""
    by_id = {r["question_id"]: AnswerUsage.model_validate(r) for r in read_jsonl(layout.usage_file(name))}
    records = list(by_id.values())
    if not records:
        return {"model": name}
    colm = [r.colm for r in records if r.colm is not None]
    return {
        "model": records[-1].model,
        "latency_s": mean(r.latency_s for r in records),
        "completion_tokens": mean(r.completion_tokens for r in records),
        "cost_usd": mean(u.cost_usd for u in colm) if len(colm) == len(records) else None,
        "server_tokens": mean(u.server_tokens for u in colm) if len(colm) == len(records) else None,
        "client_tokens": mean(u.client_tokens for u in colm) if len(colm) == len(records) else None,
    }


def mt_bench_quality(layout: Layout, name: str, judge: str) -> Quality | None:
    path = layout.judgment_file(name, judge)
    scores = [r["score"] for r in fastchat.validate_judgments(path) if r["model"] == name] if path.exists() else []
    if not scores:
        return None
    rated = [s for s in scores if s != fastchat.NO_RATING]
    return Quality(value=mean(rated) if rated else None, judged=len(rated), failures=len(scores) - len(rated))


def arena_hard_quality(layout: Layout, name: str, judge: str) -> Quality | None:
    path = layout.judgment_file(name, judge)
    if not path.exists():
        return None
    battles: list[str] = []
    failures = 0
    for record in arena_hard.validate_judgments(path):
        got, failed = arena_hard.outcomes(record)
        battles += got
        failures += failed
    value = (battles.count("win") + 0.5 * battles.count("tie")) / len(battles) * 100 if battles else None
    return Quality(value=value, judged=len(battles), failures=failures)


def alpaca_eval_quality(layout: Layout, name: str, judge: str) -> Quality | None:
    path = layout.judgment_file(name, judge)
    if not path.exists():
        return None
    prefs = [r["preference"] for r in alpaca_eval.validate_annotations(path)]
    summary = alpaca_eval.winrate(prefs)
    value = summary["win_rate"] if summary["n_total"] else None
    return Quality(value=value, judged=int(summary["n_total"]), failures=sum(p is None for p in prefs))


QUALITY = {"mt-bench": mt_bench_quality, "arena-hard": arena_hard_quality, "alpaca-eval": alpaca_eval_quality}


def answer_count(layout: Layout, name: str) -> int:
    if layout.bench == "mt-bench":
        return len(fastchat.validate_answers(layout.answer_file(name)))
    if layout.bench == "arena-hard":
        return len(arena_hard.validate_answers(layout.answer_file(name)))
    return len(alpaca_eval.validate_outputs(layout.answer_file(name)))


def rows(layout: Layout) -> Iterator[Row]:
    """One row per (output name, judge); a name nobody judged yet gets one row without quality."""
    judges = layout.judges()
    for name in layout.names():
        base = {"bench": layout.bench, "name": name, "metric": METRICS[layout.bench],
                "answers": answer_count(layout, name), **usage_summary(layout, name)}
        judged = [(j, q) for j in judges if (q := QUALITY[layout.bench](layout, name, j)) is not None]
        if not judged:
            yield Row.model_validate(base)
        for judge, q in judged:
            yield Row.model_validate({**base, "judge": judge, "quality": q.value, "judged": q.judged,
                                      "parse_failures": q.failures})
