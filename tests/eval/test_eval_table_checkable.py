"""`colm-eval table --checkable`: accuracy beside cost per arm of a hand-built benchmarks/quality.py
answers.json, checked against figures worked by hand (the working is in the comments)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from clients.eval.cli import main
from tests.eval.test_eval_flow import generate, judge

# (arm, task, pid, correct, cost_usd, escalated, error), as benchmarks/quality.py writes them.
# server alone: gsm8k 3/3, mbpp 1/2 -> 4/5 = 0.8, $0.002 an answer.
# client alone: gsm8k 1/3, mbpp 1/2 -> 2/5 = 0.4, free.
# cascade->server: g3 failed (graded right, but an error counts wrong), so gsm8k 2/3, mbpp 1/2 -> 3/5 = 0.6;
#   cost (0.002 + 0.002) / 5 = 0.0008, ratio 0.0008 / 0.002 = 0.40; PGR (0.6 - 0.4) / (0.8 - 0.4) = 0.50;
#   escalated 2 of the 4 answers with a decision (g3 has none) = 50%.
ANSWERS = [
    ("server alone", "gsm8k", "g1", True, 0.002, None, None),
    ("server alone", "gsm8k", "g2", True, 0.002, None, None),
    ("server alone", "gsm8k", "g3", True, 0.002, None, None),
    ("server alone", "mbpp", "m1", True, 0.002, None, None),
    ("server alone", "mbpp", "m2", False, 0.002, None, None),
    ("client alone", "gsm8k", "g1", True, 0.0, False, None),
    ("client alone", "gsm8k", "g2", False, 0.0, False, None),
    ("client alone", "gsm8k", "g3", False, 0.0, False, None),
    ("client alone", "mbpp", "m1", True, 0.0, False, None),
    ("client alone", "mbpp", "m2", False, 0.0, False, None),
    ("cascade->server", "gsm8k", "g1", True, 0.0, False, None),
    ("cascade->server", "gsm8k", "g2", True, 0.002, True, None),
    ("cascade->server", "gsm8k", "g3", True, 0.0, None, "APITimeoutError: Request timed out."),
    ("cascade->server", "mbpp", "m1", True, 0.0, False, None),
    ("cascade->server", "mbpp", "m2", False, 0.002, True, None),
]
ARMS = ["server alone", "client alone", "cascade->server"]


def answer(arm: str, task: str, pid: str, correct: bool, cost: float, escalated: bool | None, error: str | None) -> dict:
    return {"arm": arm, "task": task, "pid": pid, "text": "...", "correct": correct, "cost_usd": cost,
            "server_tokens": int(cost * 1e5), "escalated": escalated, "confidence": {"mean": -0.1},
            "selected": [], "latency_s": 0.5, "error": error}


def run_file(path: Path, answers: list[tuple] = ANSWERS, arms: list[str] = ARMS) -> Path:
    path.write_text(json.dumps({"calibration": [], "answers": [answer(*a) for a in answers],
                                "fit": {"signal": "mean", "threshold": -0.1}, "arms": arms, "wall_s": 12,
                                "setup": "2026-12-04 18:31 UTC, commit abc1234, hand-built"}))
    return path


def printed_rows(out: str) -> dict[str, dict[str, str]]:
    """The checkable table's cells by arm and header (rich draws headers with ┃ and rows with │)."""
    lines = out[out.index("accuracy on checkable tasks"):].splitlines()
    headers = [c.strip() for c in next(ln for ln in lines if ln.startswith("┃")).split("┃")[1:-1]]
    rows = [[c.strip() for c in ln.split("│")[1:-1]] for ln in lines if ln.startswith("│")]
    return {cells[0]: dict(zip(headers, cells)) for cells in rows}


def test_rows_against_hand_worked_figures(tmp_path, capsys) -> None:
    path = run_file(tmp_path / "answers.json")
    assert main(["table", "--out-dir", str(tmp_path / "no-judged"), "--checkable", str(path)]) == 0
    out = capsys.readouterr().out
    rows = printed_rows(out)
    assert list(rows) == ARMS
    server, client, cascade = (rows[a] for a in ARMS)
    assert (server["gsm8k"], server["mbpp"], server["pooled"]) == ("100.0% (3/3)", "50.0% (1/2)", "80.0% (4/5)")
    assert (client["gsm8k"], client["mbpp"], client["pooled"]) == ("33.3% (1/3)", "50.0% (1/2)", "40.0% (2/5)")
    assert (cascade["gsm8k"], cascade["mbpp"], cascade["pooled"]) == ("66.7% (2/3)", "50.0% (1/2)", "60.0% (3/5)")
    # Wilson, k=3, n=5: z²/n=0.76832, centre=(0.6+0.38416)/1.76832=0.556551,
    # half=1.96/1.76832·√(0.048+0.038416)=1.108397·0.293966=0.325831 -> (0.230720, 0.882382).
    assert cascade["95% CI"] == "[23.1%, 88.2%]"
    assert [r["$ / answer"] for r in (server, client, cascade)] == ["0.002000", "0.000000", "0.000800"]
    assert [r["vs server"] for r in (server, client, cascade)] == ["1.00x", "0.00x", "0.40x"]
    assert [r["PGR"] for r in (server, client, cascade)] == ["1.00", "0.00", "0.50"]
    assert [r["errors"] for r in (server, client, cascade)] == ["0", "0", "1"]
    # The client alone runs as a cascade that never escalates: no rate shown for it.
    assert [r["escalated"] for r in (server, client, cascade)] == ["-", "-", "50%"]
    assert "hand-built" in out and "no answers under" not in out


def test_pgr_is_undefined_where_server_and_client_tie(tmp_path, capsys) -> None:
    # The client alone gets m2 and g2 right as well: 4/5 like the server, so there is no gap to recover.
    tied = [a[:3] + (True,) + a[4:] if a[0] == "client alone" and a[2] in ("g2", "m2") else a for a in ANSWERS]
    tied = [a[:3] + (False,) + a[4:] if a[0] == "client alone" and a[2] == "g3" else a for a in tied]
    assert main(["table", "--out-dir", str(tmp_path), "--checkable", str(run_file(tmp_path / "a.json", tied))]) == 0
    rows = printed_rows(capsys.readouterr().out)
    assert rows["client alone"]["pooled"] == "80.0% (4/5)"
    assert {r["PGR"] for r in rows.values()} == {"-"} and {r["PGR 90% CI"] for r in rows.values()} == {"-"}


def test_csv_goes_beside_the_judged_one(tmp_path, capsys) -> None:
    path, table = run_file(tmp_path / "answers.json"), tmp_path / "out" / "table.csv"
    assert main(["table", "--out-dir", str(tmp_path), "--checkable", str(path), "--csv", str(table)]) == 0
    written = tmp_path / "out" / "table-checkable.csv"
    assert f"checkable table written to {written}" in capsys.readouterr().out
    assert not table.exists()  # no judged outputs, so no judged CSV
    rows = {r["arm"]: r for r in csv.DictReader(written.open())}
    cascade = rows["cascade->server"]
    assert (cascade["gsm8k_correct"], cascade["gsm8k_n"], cascade["mbpp_correct"], cascade["errors"]) == ("2", "3", "1", "1")
    assert float(cascade["accuracy"]) == pytest.approx(0.6) and float(cascade["cost_ratio"]) == pytest.approx(0.4)
    assert float(cascade["pgr"]) == pytest.approx(0.5) and float(cascade["ci95_low"]) == pytest.approx(0.230720, abs=1e-6)


def test_after_the_judged_table(fake, tmp_path, capsys) -> None:
    assert generate(fake, tmp_path, "mt-bench", "colm", "--limit", "1") == 0
    assert judge(fake, tmp_path, "mt-bench") == 0
    capsys.readouterr()
    path, table = run_file(tmp_path / "answers.json"), tmp_path / "table.csv"
    assert main(["table", "--out-dir", str(tmp_path), "--checkable", str(path), "--csv", str(table)]) == 0
    out = capsys.readouterr().out
    assert out.index("quality and cost per answer") < out.index("accuracy on checkable tasks")
    assert printed_rows(out)["cascade->server"]["PGR"] == "0.50"
    assert table.exists() and (tmp_path / "table-checkable.csv").exists()


def _drop_one(answers: list[tuple]) -> list[tuple]:
    return [a for a in answers if a[:3] != ("cascade->server", "mbpp", "m2")]


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("{not json", "not JSON"),
    ('[{"instruction": "x", "output": "y", "generator": "colm"}]', "not an answers.json"),  # AlpacaEval outputs
    ('{"answers": [], "arms": ["server alone"]}', "not an answers.json"),
    ("missing", "answers 4 problems, not the server alone's 5"),
    ("no client", "lack ['client alone']"),
], ids=["missing", "not-json", "alpaca-outputs", "empty", "unpaired", "no-client"])
def test_a_bad_file_is_named_and_exits_2(content, message, tmp_path, capsys) -> None:
    path = tmp_path / "answers.json"
    if content == "missing":
        run_file(path, _drop_one(ANSWERS))
    elif content == "no client":
        run_file(path, [a for a in ANSWERS if a[0] != "client alone"], [a for a in ARMS if a != "client alone"])
    elif content is not None:
        path.write_text(content)
    assert main(["table", "--out-dir", str(tmp_path), "--checkable", str(path)]) == 2
    captured = capsys.readouterr()
    assert str(path) in captured.err and message in captured.err and captured.out == ""
