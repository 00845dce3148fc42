"""The load test against the real app (`app_url`): a short, light headless run must finish
with zero failures, the custom METRIC rows, the stats samples and a report that renders.

Light on purpose: on the embedded CPU app a `colm` answer takes ~10-20 s, so few users,
think time, small max_tokens and no refinement rounds keep 40 s free of timeouts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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

LIGHT = ["--colm-mix", "colm=2,colm-client=1,server/gpt-conv=1", "--max-tokens", "32", "--colm-iterations", "0",
         "--think-min", "2", "--think-max", "4", "--stream-ratio", "0.5", "--max-turns", "2"]


@pytest.mark.serve
def test_headless_run_against_the_app(app_url, tmp_path):
    prefix = tmp_path / "out"
    done = run_locust(host=app_url, prefix=prefix, users=4, spawn_rate=2, run_time="40s", extra=LIGHT, timeout_s=300)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = stats_rows(prefix)
    assert next(r for r in rows if r["Name"] == "Aggregated")["Failure Count"] == "0"
    assert failure_rows(prefix) == []
    counts = metric_counts(rows)
    assert set(counts) == set(CUSTOM_METRICS), counts
    stats = json.loads(Path(f"{prefix}_colm_stats.json").read_text())
    assert len(stats["samples"]) >= 2 and stats["errors"] == []
    # The servers were consulted (sent, coalesced or from the cache: a rerun may be all cache).
    asked = [sum(s["stats"]["totals"][k] for k in ("upstream_calls", "coalesced", "cache_hits")) for s in stats["samples"]]
    assert asked[-1] > asked[0]
    page = Path(f"{prefix}_report.html")
    assert page.read_text().count("data:image/png;base64,") == 4
    require_chromium()
    png = tmp_path / "report.png"
    assert screenshot(page, png).returncode == 0
    assert_not_blank(png)
