"""CoLM strategies as outputs of their own, the cost ratio to the server alone, and the demo loop."""

from __future__ import annotations

import csv

import pytest

from clients.eval.cli import main
from clients.eval.formats.jsonio import read_jsonl
from clients.eval.layout import Layout
from tests.eval.fake_openai import STRATEGIES
from tests.eval.test_eval_flow import generate, judge


def _table(out, *extra: str) -> dict[str, dict[str, str]]:
    path = out / "t.csv"
    assert main(["table", "--out-dir", str(out), "--bench", "mt-bench", "--csv", str(path), *extra]) == 0
    return {r["name"]: r for r in csv.DictReader(path.open())}


def test_strategy_is_sent_and_names_its_own_output(fake, tmp_path):
    for strategy in ("guide", "shepherd"):
        assert generate(fake, tmp_path, "mt-bench", "colm", "--limit", "2", "--strategy", strategy) == 0
    layout = Layout(tmp_path, "mt-bench")
    assert layout.names() == ["colm-guide", "colm-shepherd"]
    sent = {(r["colm"]["strategy"], len(r["messages"])) for r in fake.state.of("colm")}
    assert sent == {("guide", 1), ("guide", 3), ("shepherd", 1), ("shepherd", 3)}
    usage = read_jsonl(layout.usage_file("colm-shepherd"))
    assert {u["strategy"] for u in usage} == {"shepherd"} and {u["model"] for u in usage} == {"colm"}


def test_strategy_merges_with_other_colm_options(fake, tmp_path):
    assert generate(fake, tmp_path, "mt-bench", "colm", "--limit", "1", "--strategy", "guide",
                    "--extra-body", '{"colm": {"top_k": 1}}') == 0
    assert {(r["colm"]["strategy"], r["colm"]["top_k"]) for r in fake.state.of("colm")} == {("guide", 1)}


@pytest.mark.parametrize("extra, message", [
    (["--strategy", "nope"], "available strategies are: " + ", ".join(STRATEGIES)),
    (["--strategy", "guide", "--extra-body", '{"colm": {"strategy": "shepherd"}}'], "disagree"),
])
def test_bad_strategy_exits_2_before_any_question(fake, tmp_path, capsys, extra, message):
    assert generate(fake, tmp_path, "mt-bench", "colm", "--limit", "1", *extra) == 2
    assert message in capsys.readouterr().err and fake.state.count("colm") == 0


def test_strategy_on_an_endpoint_without_strategies(fake, tmp_path, capsys):
    plain = fake.url.replace("/v1", "/plain/v1")
    assert main(["generate", "--bench", "mt-bench", "--base-url", plain, "--model", "colm", "--limit", "1",
                 "--strategy", "guide", "--out-dir", str(tmp_path)]) == 2
    assert "has no /colm/strategies" in capsys.readouterr().err


def test_table_puts_each_strategy_beside_both_baselines(fake, tmp_path, capsys):
    for strategy in STRATEGIES:
        assert generate(fake, tmp_path, "mt-bench", "colm", "--limit", "3", "--strategy", strategy) == 0
    assert generate(fake, tmp_path, "mt-bench", "colm-client", "--limit", "3") == 0
    assert generate(fake, tmp_path, "mt-bench", "server/gpt-conv", "--limit", "2") == 0  # fewer questions
    assert judge(fake, tmp_path, "mt-bench", "--limit", "3") == 0
    capsys.readouterr()
    rows = _table(tmp_path)
    assert set(rows) == {"colm-guide", "colm-shepherd", "colm-cascade", "colm-client", "server__gpt-conv"}
    layout = Layout(tmp_path, "mt-bench")

    def cost(name: str, questions: set[int]) -> float:
        return sum(u["colm"]["cost_usd"] for u in read_jsonl(layout.usage_file(name)) if u["question_id"] in questions)

    server = cost("server__gpt-conv", {81, 82})
    for strategy in STRATEGIES:
        row = rows[f"colm-{strategy}"]
        assert row["strategy"] == strategy and row["quality"] == "8.0" and row["cost_baseline"] == "server__gpt-conv"
        # over the questions both answered (81, 82), not over all three
        assert float(row["cost_ratio"]) == pytest.approx(cost(f"colm-{strategy}", {81, 82}) / server)
        assert float(row["est_cost_ratio"]) == pytest.approx(cost(f"colm-{strategy}", {81, 82, 83}) / (6 * 0.005))
    assert float(rows["colm-guide"]["cost_ratio"]) > float(rows["colm-cascade"]["cost_ratio"])
    assert float(rows["colm-client"]["cost_ratio"]) == 0.0 and float(rows["server__gpt-conv"]["cost_ratio"]) == 1.0
    assert rows["colm-client"]["est_cost_ratio"] == ""
    out = capsys.readouterr().out
    assert "vs server: cost / the cost of server__gpt-conv" in out and "colm-cascade" in out
    assert "offline" not in out  # the fake judge is no stand-in


def test_cost_baseline_can_be_named(fake, tmp_path):
    for model in ("server/gpt-conv", "server/qwen-math", "colm-client"):
        assert generate(fake, tmp_path, "mt-bench", model, "--limit", "1") == 0
    assert {r["cost_ratio"] for r in _table(tmp_path).values()} == {""}  # two servers: which is the baseline?
    rows = _table(tmp_path, "--cost-baseline", "server__qwen-math")
    assert float(rows["server__qwen-math"]["cost_ratio"]) == 1.0 and rows["colm-client"]["cost_ratio"] == "0.0"


def _demo(fake, out, url: str, capsys) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["demo", "--url", url, "--out-dir", str(out), "--questions", "2", "--judge-model", "small-judge",
                   "--max-tokens", "32", "--judge-max-tokens", "48"])
    return status, capsys.readouterr().out


def test_demo_runs_every_strategy_and_both_baselines(fake, tmp_path, capsys):
    status, out = _demo(fake, tmp_path, fake.url.removesuffix("/v1"), capsys)
    assert status == 0, out
    assert "strategies: guide, shepherd, cascade" in out
    names = ["colm-cascade", "colm-client", "colm-guide", "colm-shepherd", "server__gpt-conv"]
    assert Layout(tmp_path, "mt-bench").names() == names
    assert all(r["max_tokens"] == 32 for r in fake.state.requests if r["model"] != "small-judge")
    judge_requests = fake.state.of("small-judge")
    assert len(judge_requests) == 5 * 2 * 2 and all("structured_outputs" in r for r in judge_requests)
    rows = {r["name"]: r for r in csv.DictReader((tmp_path / "table.csv").open())}
    assert set(rows) == set(names) and {r["quality"] for r in rows.values()} == {"7.0"}
    assert all(r["cost_ratio"] for r in rows.values()) and {r["judge_offline"] for r in rows.values()} == {"True"}
    assert "say nothing about real answer quality" in out and "vs server" in out
    assert (tmp_path / "quality_vs_cost.png").stat().st_size > 1000


def test_demo_without_strategies_runs_plain_colm(fake, tmp_path, capsys):
    fake.state.strategies = False
    status, out = _demo(fake, tmp_path, fake.url.removesuffix("/v1"), capsys)
    assert status == 0, out
    assert "none listed (no /v1/colm/strategies): plain colm" in out
    assert Layout(tmp_path, "mt-bench").names() == ["colm", "colm-client", "server__gpt-conv"]
    assert all("strategy" not in (r.get("colm") or {}) for r in fake.state.of("colm"))
