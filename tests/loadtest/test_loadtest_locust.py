"""Headless Locust runs of `locust -f loadtest/` against the fake CoLM server.

One run with the default mix must finish with zero failures and write Locust's CSVs (with
the custom METRIC rows), the request rows, the /v1/colm/stats samples and the HTML report;
a run whose only key is refused must record the failures by OpenAI error type.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from tests.loadtest.fake_colm_server import RATE_LIMITED_KEY
from tests.loadtest.locust_run import (
    CUSTOM_METRICS,
    assert_not_blank,
    failure_rows,
    metric_counts,
    require_chromium,
    run_locust,
    screenshot,
    stats_rows,
)

FAST = ["--think-min", "0.2", "--think-max", "0.6", "--stream-ratio", "0.5", "--max-tokens", "8",
        "--colm-stats-interval", "2"]


@pytest.fixture(scope="module")
def good_run(fake_colm_module, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    prefix = tmp_path_factory.mktemp("locust") / "out"
    done = run_locust(host=fake_colm_module.url, prefix=prefix, users=4, spawn_rate=4, run_time="15s",
                      extra=[*FAST, "--api-keys", "sk-app-a,sk-app-b", "--colm-iterations", "0"], timeout_s=120)
    return prefix, done


def test_run_exits_zero_with_no_failures(good_run):
    prefix, done = good_run
    assert done.returncode == 0, done.stderr[-3000:]
    rows = stats_rows(prefix)
    aggregated = next(r for r in rows if r["Name"] == "Aggregated")
    assert aggregated["Failure Count"] == "0"
    assert failure_rows(prefix) == []
    chat = [r for r in rows if r["Type"] in ("CHAT", "STREAM")]
    assert {r["Name"] for r in chat} <= {"colm", "colm-client", "server/gpt-conv"}
    assert sum(int(r["Request Count"]) for r in chat) >= 8


def test_custom_metric_rows(good_run):
    prefix, _ = good_run
    rows = stats_rows(prefix)
    counts = metric_counts(rows)
    assert set(counts) == set(CUSTOM_METRICS) and all(n > 0 for n in counts.values())
    answers = sum(int(r["Request Count"]) for r in rows if r["Type"] in ("CHAT", "STREAM"))
    assert counts["server_tokens"] == counts["cost_usd_x1e6"] == counts["client_tokens"] == answers
    streamed = sum(int(r["Request Count"]) for r in rows if r["Type"] == "STREAM")
    assert counts["ttft_ms"] == streamed
    colm_cost = next(r for r in rows if r["Name"] == "cost_usd_x1e6 colm")
    assert float(colm_cost["Average Response Time"]) > 0


def test_requests_follow_the_options(good_run, fake_colm_module):
    sent = fake_colm_module.state.requests
    assert {r["key"] for r in sent} == {"sk-app-a", "sk-app-b"}
    assert all(r["max_tokens"] == 8 for r in sent)
    colm = [r for r in sent if r["model"] == "colm"]
    assert colm and all(r["colm"] == {"iterations": 0} for r in colm)
    assert all("colm" not in r for r in sent if r["model"] != "colm")
    assert any(len(r["messages"]) == 3 for r in sent), "no second turn of a multi-turn session"


def test_request_rows_and_stats_samples(good_run):
    prefix, _ = good_run
    with Path(f"{prefix}_colm_requests.csv").open(newline="") as f:
        records = list(csv.DictReader(f))
    answered = sum(int(r["Request Count"]) for r in stats_rows(prefix) if r["Type"] in ("CHAT", "STREAM"))
    assert len(records) >= answered and all(r["ok"] == "True" for r in records)
    assert {r["persona"] for r in records} == {"math", "coding", "writing", "chat"}
    stats = json.loads(Path(f"{prefix}_colm_stats.json").read_text())
    assert len(stats["samples"]) >= 3 and stats["errors"] == []
    assert stats["settings"]["iterations"] == 0 and "api_keys" not in stats["settings"]
    first, last = stats["samples"][0]["stats"]["totals"], stats["samples"][-1]["stats"]["totals"]
    assert last["upstream_calls"] > first["upstream_calls"]


def test_report_written_and_summary_printed(good_run):
    prefix, done = good_run
    page = Path(f"{prefix}_report.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    for title in ("Latency and throughput over time", "Time to first token", "cost per answer", "Upstream servers"):
        assert title in page
    assert "CoLM load test summary" in done.stderr and "server tok/answer" in done.stderr


def test_report_renders_in_a_browser(good_run, tmp_path):
    require_chromium()
    prefix, _ = good_run
    png = tmp_path / "report.png"
    done = screenshot(Path(f"{prefix}_report.html"), png)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_not_blank(png)


def test_refused_key_fails_with_its_openai_error_type(fake_colm, tmp_path):
    prefix = tmp_path / "refused"
    done = run_locust(host=fake_colm.url, prefix=prefix, users=2, spawn_rate=2, run_time="8s",
                      extra=[*FAST, "--api-keys", RATE_LIMITED_KEY, "--colm-report", "off"], timeout_s=90)
    assert done.returncode == 1  # Locust's exit code when a request failed
    failures = failure_rows(prefix)
    assert failures and {f["Error"] for f in failures} == {"RateLimitError 429 rate_limit_exceeded"}
    assert metric_counts(stats_rows(prefix)) == {}
    assert not Path(f"{prefix}_report.html").exists()
    with Path(f"{prefix}_colm_requests.csv").open(newline="") as f:
        assert {r["error"] for r in csv.DictReader(f)} == {"RateLimitError 429 rate_limit_exceeded"}
