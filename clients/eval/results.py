"""Quality and cost per output name, side by side, read back from the files on disk.

The cost ratio puts every output beside the server alone (`server/<reference_server>`, its output
`server__<reference_server>`): its cost over the questions both answered, divided by the server's
cost over the same questions. The estimated ratio is the router's own figure: the cost over
the `baseline_cost_usd` it reports (what the reference server alone would have charged for answers
that long).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from statistics import mean

from pydantic import BaseModel

from clients.eval.config import Bench
from clients.eval.formats import alpaca_eval, arena_hard, fastchat
from clients.eval.formats.jsonio import read_json, read_jsonl
from clients.eval.layout import Layout
from clients.eval.model_info import JudgeCard
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
    strategy: str | None = None
    judge: str | None = None
    judge_offline: bool = False
    metric: str
    answers: int
    quality: float | None = None
    judged: int = 0
    parse_failures: int = 0
    cost_usd: float | None = None
    cost_ratio: float | None = None
    cost_baseline: str | None = None
    est_cost_ratio: float | None = None
    server_tokens: float | None = None
    client_tokens: float | None = None
    completion_tokens: float | None = None
    latency_s: float | None = None

    @property
    def judge_label(self) -> str | None:
        return None if self.judge is None else self.judge + (" (offline)" if self.judge_offline else "")


def usage_records(layout: Layout, name: str) -> dict[int | str, AnswerUsage]:
    """The usage of each answered question; a rerun's line for the same question wins."""
    return {r["question_id"]: AnswerUsage.model_validate(r) for r in read_jsonl(layout.usage_file(name))}


def usage_summary(by_id: dict[int | str, AnswerUsage], name: str) -> dict[str, object]:
    """Means per answer from the usage sidecar; cost and server tokens only where CoLM reported them."""
    records = list(by_id.values())
    if not records:
        return {"model": name}
    colm = [r.colm for r in records if r.colm is not None]
    estimates = [u for u in colm if u.baseline_cost_usd]
    return {
        "model": records[-1].model,
        "strategy": records[-1].strategy,
        "latency_s": mean(r.latency_s for r in records),
        "completion_tokens": mean(r.completion_tokens for r in records),
        "cost_usd": mean(u.cost_usd for u in colm) if len(colm) == len(records) else None,
        "est_cost_ratio": (sum(u.cost_usd for u in estimates) / sum(u.baseline_cost_usd or 0.0 for u in estimates)
                           if estimates else None),
        "server_tokens": mean(u.server_tokens for u in colm) if len(colm) == len(records) else None,
        "client_tokens": mean(u.client_tokens for u in colm) if len(colm) == len(records) else None,
    }


def cost_ratio(model: dict[int | str, AnswerUsage], baseline: dict[int | str, AnswerUsage]) -> float | None:
    """Cost over the server alone's cost, over the questions both answered with a reported cost."""
    common = [q for q, u in model.items() if u.colm is not None and q in baseline and baseline[q].colm is not None]
    base = sum(baseline[q].colm.cost_usd for q in common)  # type: ignore[union-attr]
    return sum(model[q].colm.cost_usd for q in common) / base if common and base > 0 else None  # type: ignore[union-attr]


def cost_baseline(layout: Layout, chosen: str | None) -> str | None:
    """--cost-baseline, else the one `server__*` output (the server alone), else none."""
    names = layout.names()
    if chosen is not None:
        if chosen not in names:
            logger.info("%s: no answers of the cost baseline %s; no cost ratio", layout.bench, chosen)
            return None
        return chosen
    servers = [n for n in names if n.startswith("server__")]
    if len(servers) > 1:
        logger.info("%s: several server outputs %s; pass --cost-baseline for the cost ratio", layout.bench, servers)
    return servers[0] if len(servers) == 1 else None


def judge_card(layout: Layout, judge: str) -> JudgeCard | None:
    data = read_json(layout.judge_card(judge))
    return JudgeCard.model_validate(data) if data is not None else None


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


def rows(layout: Layout, *, baseline: str | None = None) -> Iterator[Row]:
    """One row per (output name, judge); a name nobody judged yet gets one row without quality."""
    judges = layout.judges()
    offline = {j: bool((card := judge_card(layout, j)) and card.offline) for j in judges}
    base_name = cost_baseline(layout, baseline)
    base_usage = usage_records(layout, base_name) if base_name else {}
    for name in layout.names():
        usage = usage_records(layout, name)
        base = {"bench": layout.bench, "name": name, "metric": METRICS[layout.bench],
                "answers": answer_count(layout, name), **usage_summary(usage, name),
                "cost_baseline": base_name, "cost_ratio": cost_ratio(usage, base_usage) if base_name else None}
        judged = [(j, q) for j in judges if (q := QUALITY[layout.bench](layout, name, j)) is not None]
        if not judged:
            yield Row.model_validate(base)
        for judge, q in judged:
            yield Row.model_validate({**base, "judge": judge, "judge_offline": offline[judge], "quality": q.value,
                                      "judged": q.judged, "parse_failures": q.failures})
