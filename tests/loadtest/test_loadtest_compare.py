"""The comparison runner: ratios from pooled rounds, and one real (short) run of all three."""

from __future__ import annotations

import subprocess
import sys

from loadtest._compare_table import VariantResult, ratio, ratio_table
from loadtest.compare import pooled, variants
from tests.loadtest.locust_run import REPO


def _result(name: str, *, cost: float, p50: float, rate: float, failures: int = 0) -> VariantResult:
    return VariantResult(name=name, requests=10, failures=failures, cost_usd_per_answer=cost, server_tokens_per_answer=cost * 1e5,
                         p50_s=p50, p95_s=p50 * 2, answers_per_s=rate)


def test_ratio_edge_cases():
    assert ratio(2.0, 4.0) == 0.5
    assert ratio(None, 1.0) is None and ratio(1.0, 0.0) is None


def test_pooled_takes_medians_and_adds_failures():
    rounds = [_result("colm", cost=c, p50=p, rate=r, failures=f)
              for c, p, r, f in ((1.0, 10.0, 0.1, 0), (3.0, 30.0, 0.3, 1), (2.0, 20.0, 0.2, 0))]
    pool = pooled(rounds)
    assert (pool.cost_usd_per_answer, pool.p50_s, pool.answers_per_s) == (2.0, 20.0, 0.2)
    assert pool.failures == 1 and pool.requests == 30


def test_ratio_table():
    results = {"server": _result("server", cost=0.004, p50=2.0, rate=1.0),
               "colm": _result("colm", cost=0.002, p50=8.0, rate=0.25),
               "colm-nocache": _result("colm-nocache", cost=0.008, p50=10.0, rate=0.2)}
    lines = ratio_table(results).splitlines()
    assert lines[2].split() == ["colm", "/", "server", "0.50x", "0.50x", "4.00x", "4.00x", "0.25x"]
    assert lines[4].split()[:4] == ["colm", "/", "colm-nocache", "0.25x"]


def test_variants_cover_the_three_setups():
    v = variants("gpt-conv")
    assert v["server"][:2] == ["--colm-mix", "server/gpt-conv=1"]
    assert v["colm-nocache"][-2:] == ["--colm-cache", "off"] and v["colm"][-2:] == ["--colm-cache", "on"]


def test_compare_runs_all_three_against_the_fake(fake_colm, tmp_path):
    out = tmp_path / "cmp"
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.compare", "--host", fake_colm.url, "-u", "2", "-r", "2", "-t", "5s",
         "--out", str(out), "--no-reports", "--", "--think-min", "0.1", "--think-max", "0.3", "--max-tokens", "4"],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for line in ("colm / server", "colm-nocache / server", "colm / colm-nocache"):
        assert line in done.stdout
    for name in ("server", "colm", "colm-nocache"):
        assert (out / f"r0_{name}_colm_requests.csv").exists() and (out / f"r0_{name}.log").exists()
    sent = fake_colm.state.requests
    assert {r["model"] for r in sent} == {"server/gpt-conv", "colm"}
    assert any(r.get("colm") == {"cache": False} for r in sent)  # the colm-nocache run
    assert any("colm" not in r for r in sent if r["model"] == "colm")  # the colm run: defaults
