"""Helpers shared by the load-test tests: a headless Locust subprocess, its CSV rows, and a
headless-Chromium screenshot of the HTML report.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from matplotlib import image

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CUSTOM_METRICS = ("ttft_ms", "server_tokens", "client_tokens", "cost_usd_x1e6")


def run_locust(*, host: str, prefix: Path, users: int, spawn_rate: float, run_time: str, extra: list[str],
               timeout_s: float) -> subprocess.CompletedProcess[str]:
    """`locust -f loadtest/ --headless ...` from the repository root, as a user would type it."""
    command = [sys.executable, "-m", "locust", "-f", "loadtest/", "--headless", "-u", str(users), "-r", str(spawn_rate),
               "-t", run_time, "--host", host, "--csv", str(prefix), *extra]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False)


def stats_rows(prefix: Path) -> list[dict[str, str]]:
    with Path(f"{prefix}_stats.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def failure_rows(prefix: Path) -> list[dict[str, str]]:
    with Path(f"{prefix}_failures.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def metric_counts(rows: list[dict[str, str]]) -> dict[str, int]:
    """Request counts of the custom METRIC rows, summed over models: {"ttft_ms": 12, ...}."""
    counts: dict[str, int] = {}
    for row in rows:
        if row["Type"] == "METRIC":
            metric = row["Name"].split(" ", 1)[0]
            counts[metric] = counts.get(metric, 0) + int(row["Request Count"])
    return counts


def require_chromium() -> None:
    """Skip without a browser locally; under CI (`make test` installs Chromium) its absence is a failure."""
    import os

    import pytest

    if chromium_available():
        return
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed, and CI must render the report in a real browser (make browser)")
    pytest.skip("chromium is not installed (make browser)")


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None


def screenshot(html: Path, png: Path) -> subprocess.CompletedProcess[str]:
    command = [CHROMIUM if Path(CHROMIUM).exists() else "chromium", "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
               "--hide-scrollbars", "--window-size=1200,3200", f"--screenshot={png}", html.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def assert_not_blank(png: Path) -> None:
    """A real page of plots: tens of KB, and a good share of the pixels neither white nor uniform."""
    assert png.stat().st_size > 30_000, f"screenshot is only {png.stat().st_size} bytes"
    pixels = image.imread(png)[..., :3]
    non_white = (pixels.mean(axis=2) < 0.95).mean()
    assert non_white > 0.03, f"screenshot is almost blank ({non_white:.1%} non-white pixels)"
    assert float(np.std(pixels)) > 0.05
