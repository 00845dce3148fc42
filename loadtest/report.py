"""`python -m loadtest.report PREFIX`: PREFIX_report.html from a finished run, and the
summary as text on stdout.

Reads PREFIX_colm_requests.csv (one row per request) and PREFIX_colm_stats.json
(/v1/colm/stats samples), both written by the load test when Locust quits with --csv.
"""

from __future__ import annotations

import argparse
import sys

from loadtest import _report_data as data
from loadtest import _report_plots as plots
from loadtest._records import (
    read_records,
    report_html_path,
    requests_csv_path,
    stats_json_path,
)
from loadtest._report_html import render
from loadtest._report_text import headline, summary_cells, summary_text, upstream_cells


def build_report(prefix: str) -> str:
    """Write PREFIX_report.html; return the text summary."""
    records = read_records(requests_csv_path(prefix))
    stats = data.load_stats(stats_json_path(prefix))
    rows = data.summaries(records)
    uses = data.server_use(stats)
    errors = data.error_counts(records)
    figures = {
        "latency": plots.latency_over_time(records),
        "ttft": plots.ttft_distribution(records),
        "cost": plots.cost_by_model(rows),
        "upstream": plots.upstream(uses, data.utilisation_series(stats)),
    }
    page = render(prefix=prefix, headline=headline(rows, uses), settings=(stats or {}).get("settings"),
                  summary_rows=[summary_cells(r) for r in rows],
                  upstream_rows=[upstream_cells(u) for u in uses], errors=errors,
                  stats_errors=(stats or {}).get("errors", []) if stats else ["no PREFIX_colm_stats.json"],
                  plots={k: plots.to_png_base64(f) for k, f in figures.items()})
    report_html_path(prefix).write_text(page, encoding="utf-8")
    return summary_text(rows, uses, errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefix", help="The --csv PREFIX of the run.")
    args = parser.parse_args(argv)
    if not requests_csv_path(args.prefix).exists():
        parser.error(f"{requests_csv_path(args.prefix)} not found: run locust -f loadtest/ with --csv {args.prefix}")
    print(build_report(args.prefix))
    print(f"\nreport: {report_html_path(args.prefix)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
