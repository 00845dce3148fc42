"""`colm-eval table`: quality beside cost for every model id, as a table, a CSV and a plot."""

from __future__ import annotations

import csv
from pathlib import Path

from rich.console import Console
from rich.table import Table

from clients.eval.config import TableArgs
from clients.eval.layout import Layout
from clients.eval.results import Row, rows

COLUMNS = [  # (header, Row field, format)
    ("bench", "bench", "{}"), ("model", "model", "{}"), ("output", "name", "{}"), ("judge", "judge", "{}"),
    ("answers", "answers", "{}"), ("quality", "quality", "{:.2f}"), ("metric", "metric", "{}"),
    ("judged", "judged", "{}"), ("parse failures", "parse_failures", "{}"),
    ("$ / answer", "cost_usd", "{:.6f}"), ("server tok / answer", "server_tokens", "{:.0f}"),
    ("client tok / answer", "client_tokens", "{:.0f}"), ("completion tok / answer", "completion_tokens", "{:.0f}"),
    ("latency s / answer", "latency_s", "{:.2f}"),
]


def collect(args: TableArgs) -> list[Row]:
    return [row for bench in args.benches for row in rows(Layout(args.out_dir, bench))]


def cell(row: Row, field: str, fmt: str) -> str:
    value = getattr(row, field)
    return "-" if value is None else fmt.format(value)


def render(table_rows: list[Row], console: Console) -> None:
    table = Table(title="colm-eval: quality and cost per answer")
    for header, _, _ in COLUMNS:
        table.add_column(header, justify="left" if header in ("bench", "model", "output", "judge", "metric") else "right")
    for row in table_rows:
        table.add_row(*(cell(row, field, fmt) for _, field, fmt in COLUMNS))
    console.print(table)
    console.print("cost and server tokens come from the `colm` usage; '-' where the endpoint reported none.")


def write_csv(table_rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(Row.model_fields))
        writer.writeheader()
        writer.writerows(r.model_dump() for r in table_rows)


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
        for r in (p for p in points if p.bench == bench):
            ax.scatter(r.cost_usd, r.quality)
            ax.annotate(r.model + (f" ({r.judge})" if r.judge else ""), (r.cost_usd, r.quality), fontsize=8,
                        textcoords="offset points", xytext=(4, 4))
        ax.set_title(bench)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_xlabel("cost per answer (USD)")
        ax.set_ylabel(next((r.metric for r in points if r.bench == bench), "quality"))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return len(points)
