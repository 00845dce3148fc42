"""`colm-eval table`: quality beside cost for every model id, as a table, a CSV and a plot."""

from __future__ import annotations

import csv
from pathlib import Path

from rich.console import Console
from rich.table import Table

from clients.eval.config import TableArgs
from clients.eval.layout import Layout
from clients.eval.results import Row, rows

COLUMNS = [  # (header, Row field, format); the CSV has every Row field, strategy and metric included
    ("bench", "bench", "{}"), ("output", "name", "{}"), ("model", "model", "{}"), ("judge", "judge_label", "{}"),
    ("answers", "answers", "{}"), ("quality", "quality", "{:.2f}"), ("judged", "judged", "{}"),
    ("unparsed", "parse_failures", "{}"), ("$ / answer", "cost_usd", "{:.6f}"), ("vs server", "cost_ratio", "{:.2f}x"),
    ("est. vs server", "est_cost_ratio", "{:.2f}x"), ("server tok", "server_tokens", "{:.0f}"),
    ("client tok", "client_tokens", "{:.0f}"), ("output tok", "completion_tokens", "{:.0f}"),
    ("latency s", "latency_s", "{:.2f}"),
]
LEFT = {"bench", "output", "model", "judge"}
OFFLINE_NOTE = ("{judges}: the app's embedded offline stand-in (a small local model). Its scores say nothing "
                "about real answer quality; they only show that the loop runs. For real figures judge with a "
                "strong model, e.g. --judge-base-url https://api.openai.com/v1 --judge-model gpt-4.1.")


def collect(args: TableArgs) -> list[Row]:
    return [row for bench in args.benches for row in rows(Layout(args.out_dir, bench), baseline=args.cost_baseline)]


def cell(row: Row, field: str, fmt: str) -> str:
    return shown(getattr(row, field), fmt)


def shown(value: object, fmt: str) -> str:
    """The value formatted, or "-" where it is undefined (no cost reported, no gap to recover)."""
    return "-" if value is None else fmt.format(value)


def notes(table_rows: list[Row]) -> list[str]:
    """What the reader must know to read the figures: cost sources, ratios, parse failures, offline judges."""
    metrics = sorted({f"{r.bench}: {r.metric}" for r in table_rows})
    lines = [f"quality: {'; '.join(metrics)}. Tokens, cost and latency are per answer (all its turns).",
             "cost and server tokens come from the `colm` usage; '-' where the endpoint reported none."]
    baselines = sorted({r.cost_baseline for r in table_rows if r.cost_baseline})
    if baselines:
        lines.append(f"vs server: cost / the cost of {', '.join(baselines)} (the server alone) over the same "
                     "questions; est. vs server: cost / the router's estimate of the server alone (baseline_cost_usd).")
    if any(r.parse_failures for r in table_rows):
        lines.append("unparsed: judgments without a readable verdict; left out of quality, never guessed.")
    offline = sorted({r.judge for r in table_rows if r.judge and r.judge_offline})
    if offline:
        lines.append(OFFLINE_NOTE.format(judges=", ".join(offline)))
    return lines


def render(table_rows: list[Row], console: Console) -> None:
    table = Table(title="colm-eval: quality and cost per answer")
    for header, _, _ in COLUMNS:
        table.add_column(header, justify="left" if header in LEFT else "right", no_wrap=header in LEFT)
    for row in table_rows:
        table.add_row(*(cell(row, field, fmt) for _, field, fmt in COLUMNS))
    console.print(table)
    for line in notes(table_rows):
        console.print(line)


def write_csv(table_rows: list[Row], path: Path) -> None:
    write_records([r.model_dump() for r in table_rows], fields=list(Row.model_fields), path=path)


def write_records(records: list[dict], *, fields: list[str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)


def plot(table_rows: list[Row], path: Path) -> int:
    """Quality against cost per answer, one panel per benchmark; returns the points drawn."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    points = [r for r in table_rows if r.quality is not None and r.cost_usd is not None]
    benches = sorted({r.bench for r in points}) or ["(no judged answers with cost)"]
    fig, axes = plt.subplots(1, len(benches), figsize=(5.5 * len(benches), 4.5), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        mine = sorted((p for p in points if p.bench == bench), key=lambda r: (r.cost_usd, r.quality))
        several_judges = len({r.judge for r in mine}) > 1
        for i, r in enumerate(mine):  # labels stepped up and down, so close points stay readable
            ax.scatter(r.cost_usd, r.quality)
            ax.annotate(r.name + (f" ({r.judge})" if several_judges else ""), (r.cost_usd, r.quality), fontsize=8,
                        textcoords="offset points", xytext=(4, 4 + 10 * (i % 3) - (12 if i % 2 else 0)))
        ax.set_title(bench)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_xlabel("cost per answer (USD)")
        ax.set_ylabel(next((r.metric for r in points if r.bench == bench), "quality"))
        ax.grid(alpha=0.3)
    if any(r.judge_offline for r in points):
        fig.suptitle("offline stand-in judge: these scores say nothing about real quality", fontsize=9,
                     color="firebrick")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return len(points)
