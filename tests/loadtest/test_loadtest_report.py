"""The report from known request rows and stats samples: numbers, text and HTML."""

from __future__ import annotations

import json

import pytest

from loadtest._records import RequestRecord, read_records, write_records
from loadtest._report_data import server_use, summaries, utilisation_series
from loadtest.report import build_report, main


def _row(i: int, *, model: str, ok: bool = True, e2e_ms: float = 1000.0, ttft_ms: float | None = None,
         cost: float = 0.001) -> RequestRecord:
    return RequestRecord(start_time=1000.0 + i, app="math-0", persona="math", model=model, stream=ttft_ms is not None,
                         turn=0, question_id=str(i), ok=ok, e2e_ms=e2e_ms, ttft_ms=ttft_ms,
                         server_tokens=100 if ok else None, client_tokens=50 if ok else None,
                         cost_usd=cost if ok else None, error=None if ok else "RateLimitError 429 rate_limit_exceeded")


ROWS = [_row(i, model="colm", e2e_ms=1000.0 * (i + 1), ttft_ms=200.0) for i in range(4)] + [
    _row(4, model="server/gpt-conv", e2e_ms=500.0, cost=0.003),
    _row(5, model="server/gpt-conv", ok=False, e2e_ms=10.0),
]


def _server(calls: int, coalesced: int, hits: int, in_flight: int) -> dict:
    return {"upstream_calls": calls, "coalesced": coalesced, "cache_hits": hits, "retries": 1, "server_tokens": calls * 10,
            "cost_usd": calls / 1000, "queue_depth": 0, "in_flight": in_flight, "max_concurrency": 8, "breaker": "closed"}


STATS = {"host": "x", "settings": {"mix": {"colm": 1.0}}, "errors": [], "samples": [
    {"t": 100.0, "label": "start", "stats": {"servers": {"local": _server(10, 0, 0, 0)}}},
    {"t": 105.0, "label": "during", "stats": {"servers": {"local": _server(20, 2, 3, 4)}}},
    {"t": 110.0, "label": "stop", "stats": {"servers": {"local": _server(31, 5, 4, 0)}}},
]}


def test_summaries_by_model_and_all():
    rows = {s.model: s for s in summaries(ROWS)}
    assert list(rows) == ["colm", "server/gpt-conv", "all"]
    colm, server, total = rows["colm"], rows["server/gpt-conv"], rows["all"]
    assert (colm.requests, colm.failures, server.requests, server.failures) == (4, 0, 2, 1)
    assert colm.p50_ms == pytest.approx(2500.0) and colm.ttft_p50_ms == pytest.approx(200.0)
    assert server.ttft_p50_ms is None and server.cost_usd_per_answer == pytest.approx(0.003)
    assert total.cost_usd_per_answer == pytest.approx((4 * 0.001 + 0.003) / 5)
    # Window: first start (1000) to last completion (1003 + 4 s = 1007): 5 answers in 7 s.
    assert total.answers_per_s == pytest.approx(5 / 7)


def test_server_use_is_the_difference_of_first_and_last_sample():
    (use,) = server_use(STATS)
    assert (use.upstream_calls, use.coalesced, use.cache_hits, use.retries) == (21, 5, 4, 0)
    assert use.coalescing_rate == pytest.approx(5 / 30) and use.cache_hit_rate == pytest.approx(4 / 30)
    assert server_use({"samples": STATS["samples"][:1]}) == []
    t, util, _ = utilisation_series(STATS)["local"]
    assert t == [0.0, 5.0, 10.0] and util == [0.0, 0.5, 0.0]


def test_records_round_trip(tmp_path):
    path = tmp_path / "x_colm_requests.csv"
    write_records(path, ROWS)
    assert read_records(path) == sorted(ROWS, key=lambda r: r.start_time)


def test_build_report_and_cli(tmp_path, capsys):
    prefix = str(tmp_path / "run")
    write_records(tmp_path / "run_colm_requests.csv", ROWS)
    (tmp_path / "run_colm_stats.json").write_text(json.dumps(STATS))
    text = build_report(prefix)
    assert "5 answers, 1 failures" in text and "30.0% of upstream calls saved" in text
    assert "server/gpt-conv: RateLimitError 429 rate_limit_exceeded" in text
    page = (tmp_path / "run_report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "16.7%" in page and "Options: mix=" in page
    assert main([prefix]) == 0
    assert "USD/1k answers" in capsys.readouterr().out


def test_report_without_stats_says_so(tmp_path):
    write_records(tmp_path / "run_colm_requests.csv", ROWS[:2])
    build_report(str(tmp_path / "run"))
    assert "no PREFIX_colm_stats.json" in (tmp_path / "run_report.html").read_text()


def test_cli_without_a_run_is_an_error(tmp_path):
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "missing")])
    assert info.value.code == 2
