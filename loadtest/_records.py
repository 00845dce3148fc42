"""One row per request, kept by the load test and written as PREFIX_colm_requests.csv.

Locust's own CSVs aggregate and round response times; the report needs exact per-request
values over time and per model, so the users also keep these rows.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class RequestRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_time: float
    app: str
    persona: str
    model: str
    stream: bool
    turn: int
    question_id: str
    ok: bool
    e2e_ms: float
    ttft_ms: float | None = None
    server_tokens: int | None = None
    client_tokens: int | None = None
    cost_usd: float | None = None
    completion_tokens: int | None = None
    error: str | None = None


FIELDS = list(RequestRecord.model_fields)


def requests_csv_path(prefix: str) -> Path:
    return Path(f"{prefix}_colm_requests.csv")


def stats_json_path(prefix: str) -> Path:
    return Path(f"{prefix}_colm_stats.json")


def report_html_path(prefix: str) -> Path:
    return Path(f"{prefix}_report.html")


def write_records(path: Path, records: list[RequestRecord]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for r in sorted(records, key=lambda r: r.start_time):
            writer.writerow({k: ("" if v is None else v) for k, v in r.model_dump().items()})


def read_records(path: Path) -> list[RequestRecord]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [RequestRecord.model_validate({k: (None if v == "" else v) for k, v in row.items()}) for row in rows]
