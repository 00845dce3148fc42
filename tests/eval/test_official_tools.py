"""The official tools read colm-eval's files and print the figures colm-eval prints.

FastChat's `llm_judge` (fschat) and AlpacaEval (alpaca-eval) run in their own environment
(see official_tools.py) over files colm-eval wrote from the fake server. arena-hard-auto
is not on PyPI: its files are checked by colm-eval's validators (test_eval_formats.py).
"""

from __future__ import annotations

import csv
import json

import pytest

from clients.eval.cli import main
from clients.eval.formats import alpaca_eval
from clients.eval.formats.jsonio import read_jsonl
from clients.eval.layout import Layout
from tests.eval.official_tools import check_fastchat, mt_bench_questions, run_json
from tests.eval.test_eval_flow import generate, judge


def test_fastchat_reads_our_mt_bench_files(official, fake, tmp_path):
    questions, n = mt_bench_questions(tmp_path)
    assert generate(fake, tmp_path, "mt-bench", "colm", "--questions", str(questions), "--strategy", "guide") == 0
    for model in ("colm-client", "server/gpt-conv"):
        assert generate(fake, tmp_path, "mt-bench", model, "--questions", str(questions)) == 0
    assert judge(fake, tmp_path, "mt-bench", "--questions", str(questions), judge_model="varied-judge") == 0
    ours = read_jsonl(Layout(tmp_path, "mt-bench").judgment_file("", "varied-judge"))
    assert len(ours) == 3 * n * 2
    assert any(j["score"] == -1 for j in ours) and len({j["score"] for j in ours}) > 3  # a test that can fail
    shown = check_fastchat(tmp_path, "varied-judge", n)
    assert set(shown["average"]) == {"colm-guide", "colm-client", "server__gpt-conv"}


def test_fastchat_reads_constrained_small_judge_files(official, fake, tmp_path):
    """The small vLLM-like judge's constrained verdicts are FastChat's too."""
    questions, n = mt_bench_questions(tmp_path, categories=("writing", "reasoning"))
    assert generate(fake, tmp_path, "mt-bench", "colm-client", "--questions", str(questions)) == 0
    assert judge(fake, tmp_path, "mt-bench", "--questions", str(questions), judge_model="small-judge") == 0
    shown = check_fastchat(tmp_path, "small-judge", n)
    assert shown["average"] == {"colm-client": 7.0}


def test_alpaca_eval_reads_our_files(official, fake, tmp_path):
    instructions = [{"instruction": f"Write one line about topic {i}.", "dataset": "helpful_base"} for i in range(8)]
    qfile = tmp_path / "alpaca.json"
    qfile.write_text(json.dumps(instructions))
    for model in ("strong", "colm-client", "server/weak"):
        assert generate(fake, tmp_path, "alpaca-eval", model, "--questions", str(qfile)) == 0
    assert judge(fake, tmp_path, "alpaca-eval", "--baseline", "server__weak", judge_model="varied-judge") == 0
    layout = Layout(tmp_path, "alpaca-eval")
    assert main(["table", "--out-dir", str(tmp_path), "--bench", "alpaca-eval", "--csv", str(tmp_path / "t.csv")]) == 0
    rows = {r["name"]: r for r in csv.DictReader((tmp_path / "t.csv").open())}
    reference = layout.answer_file("server__weak")
    seen: list[float | None] = []
    for name in ("strong", "colm-client"):
        annotations = alpaca_eval.validate_annotations(layout.judgment_file(name, "varied-judge"))
        prefs = [a["preference"] for a in annotations]
        seen += prefs
        ours = alpaca_eval.winrate(prefs)
        theirs = run_json("alpaca_eval_check.py", str(layout.answer_file(name)), str(reference), "varied-judge")
        assert theirs["name"] == name and {"instruction", "output", "generator"} <= set(theirs["columns"])
        assert theirs["instructions"] == [i["instruction"] for i in instructions]
        assert theirs["reference_instructions"] == sorted(i["instruction"] for i in instructions)
        for figure in ("win_rate", "standard_error", "n_total", "n_wins", "n_wins_base", "n_draws"):
            assert theirs["winrate"][figure] == pytest.approx(ours[figure]), figure
            assert theirs["leaderboard"][figure] == pytest.approx(ours[figure]), figure
        assert float(rows[name]["quality"]) == pytest.approx(theirs["winrate"]["win_rate"])
        assert int(rows[name]["parse_failures"]) == prefs.count(None)
    assert None in seen and 1.5 in seen  # unreadable verdicts and split ones both occur: a test that can fail
