"""`colm-eval table --checkable`: accuracy beside cost for each arm of a benchmarks/quality.py
run (GSM8K, HumanEval, MBPP, graded with no judge), as a table and a CSV. The figures come from
`checkable/arms.py`, the same rows the benchmark's own report prints."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from clients.eval.checkable.arms import ArmRow, QualityRun, Score, summarise
from clients.eval.table import shown, write_records

HEADERS = ["pooled", "95% CI", "$ / answer", "vs server", "PGR", "PGR 90% CI", "escalated", "errors"]
NOTES = [
    "accuracy: right answers / answers, graded with no judge (GSM8K by its final number, the code tasks by their "
    "unit tests); an answer that failed (errors) counts as wrong.",
    "95% CI: Wilson interval of the pooled accuracy. $ / answer: server cost as billed, mean over the arm's answers; "
    "vs server: that over the server alone's.",
    "PGR: (arm - client alone) / (server alone - client alone) in pooled accuracy, with a paired-bootstrap 90% CI; "
    "'-' where the two tie.",
    "escalated: the share of a cascade's answers sent on.",
]


def show(run: QualityRun, *, source: Path, csv: Path | None, console: Console) -> None:
    """The table, and its CSV beside the judged one's when --csv asks for one."""
    arms = summarise(run)
    render(arms, source=source, setup=run.setup, console=console)
    if csv:
        path = csv_path(csv)
        write_csv(arms, path)
        print(f"checkable table written to {path}")


def task_names(arms: list[ArmRow]) -> list[str]:
    return sorted({t for r in arms for t in r.by_task})


def render(arms: list[ArmRow], *, source: Path, setup: str, console: Console) -> None:
    tasks = task_names(arms)
    table = Table(title="colm-eval: accuracy on checkable tasks and cost per answer")
    for header in ["arm", *tasks, *HEADERS]:
        table.add_column(header, justify="left" if header == "arm" else "right", no_wrap=True)
    for r in arms:
        table.add_row(r.arm, *(_score(r.by_task[t]) for t in tasks), _score(r.pooled),
                      f"[{r.ci95[0]:.1%}, {r.ci95[1]:.1%}]", f"{r.cost_per_answer:.6f}",
                      shown(r.ratio, "{:.2f}x"), shown(r.pgr, "{:.2f}"), shown(r.pgr90, "[{0[0]:.2f}, {0[1]:.2f}]"),
                      shown(r.escalation, "{:.0%}"), str(r.errors))
    console.print(table)
    for line in [*NOTES, f"from {source}" + (f": {setup}" if setup else "")]:
        console.print(line)


def _score(s: Score) -> str:
    return f"{s.accuracy:.1%} ({s.correct}/{s.n})"


def csv_path(judged_csv: Path) -> Path:
    """The checkable rows' CSV, beside the judged table's: their columns have nothing in common."""
    return judged_csv.with_name(f"{judged_csv.stem}-checkable.csv")


def write_csv(arms: list[ArmRow], path: Path) -> None:
    tasks = task_names(arms)
    records = [_record(r, tasks) for r in arms]  # a run has at least one arm: the first names the columns
    write_records(records, fields=list(records[0]), path=path)


def _record(r: ArmRow, tasks: list[str]) -> dict:
    by_task = {f"{t}_{k}": v for t in tasks for k, v in _flat(r.by_task[t]).items()}
    low, high = r.pgr90 or (None, None)
    return {"arm": r.arm, **by_task, **_flat(r.pooled), "ci95_low": r.ci95[0], "ci95_high": r.ci95[1],
            "cost_per_answer": r.cost_per_answer, "cost_ratio": r.ratio, "pgr": r.pgr, "pgr90_low": low,
            "pgr90_high": high, "escalation": r.escalation, "errors": r.errors}


def _flat(s: Score) -> dict:
    return {"correct": s.correct, "n": s.n, "accuracy": s.accuracy}
