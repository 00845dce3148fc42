"""The official tools over files the real app produced, judged by its stand-in with structured outputs.

Small on purpose (2 MT-Bench questions and 2 AlpacaEval instructions; `colm-client` and
`server/gpt-conv`; short answers and judgments) so it ends in minutes on CPU. The stand-in
lists `max_model_len` and owned_by "local", so `--judge-structured auto` constrains its
verdicts: at least 90% of them must parse.
"""

from __future__ import annotations

import json
import re

import pytest

from clients.eval.cli import main
from clients.eval.formats import alpaca_eval, fastchat
from clients.eval.formats.jsonio import read_json
from clients.eval.layout import Layout
from tests.eval.official_tools import check_fastchat, run_json

pytestmark = pytest.mark.serve

MODELS = ("colm-client", "server/gpt-conv")
JUDGE = "smollm2-local"


def _generate(app_url: str, out, bench: str, model: str, *extra: str) -> int:
    return main(["generate", "--bench", bench, "--base-url", f"{app_url}/v1", "--model", model, "--max-tokens", "64",
                 "--concurrency", "2", "--out-dir", str(out), *extra])


def _judge(app_url: str, out, bench: str, *extra: str) -> int:
    return main(["judge", "--bench", bench, "--judge-base-url", f"{app_url}/upstream/v1", "--judge-model", JUDGE,
                 "--concurrency", "4", "--out-dir", str(out), *extra])


def test_official_tools_read_the_real_apps_mt_bench(app_url, official, tmp_path):
    for model in MODELS:
        assert _generate(app_url, tmp_path, "mt-bench", model, "--limit", "2") == 0
    assert _judge(app_url, tmp_path, "mt-bench", "--limit", "2", "--judge-max-tokens", "96") == 0
    layout = Layout(tmp_path, "mt-bench")
    card = read_json(layout.judge_card(JUDGE))
    assert card["structured"] is True and card["max_model_len"] == 2048 and card["owned_by"] == "local"
    judgments = fastchat.validate_judgments(layout.judgment_file("", JUDGE))
    assert len(judgments) == len(MODELS) * 2 * 2
    parsed = [j for j in judgments if j["score"] != fastchat.NO_RATING]
    assert len(parsed) >= 0.9 * len(judgments), [j["judgment"] for j in judgments]
    shown = check_fastchat(tmp_path, JUDGE, 2)
    assert set(shown["average"]) <= {"colm-client", "server__gpt-conv"} and shown["average"]


def test_readme_judge_command_fits_the_stand_ins_context(app_url, tmp_path, capsys):
    """The README's command as written: the default --judge-max-tokens 2048 is clamped, not refused."""
    assert _generate(app_url, tmp_path, "mt-bench", "colm-client", "--limit", "1") == 0
    capsys.readouterr()
    assert main(["judge", "--bench", "mt-bench", "--judge-base-url", f"{app_url}/upstream/v1",
                 "--judge-model", JUDGE, "--limit", "1", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "verdicts constrained" in out and "0 failed" in out
    assert int(re.search(r"(\d+) with the output budget clamped", out).group(1)) >= 2
    judgments = fastchat.validate_judgments(Layout(tmp_path, "mt-bench").judgment_file("", JUDGE))
    assert len(judgments) == 2 and all(j["score"] != fastchat.NO_RATING for j in judgments)


def test_official_alpaca_eval_reads_the_real_apps_files(app_url, official, tmp_path):
    instructions = tmp_path / "alpaca.json"
    instructions.write_text(json.dumps([{"instruction": "Name three primary colours."},
                                        {"instruction": "Give one tip for sleeping well."}]))
    for model in MODELS:
        assert _generate(app_url, tmp_path, "alpaca-eval", model, "--questions", str(instructions)) == 0
    assert _judge(app_url, tmp_path, "alpaca-eval", "--baseline", "server__gpt-conv") == 0
    layout = Layout(tmp_path, "alpaca-eval")
    annotations = alpaca_eval.validate_annotations(layout.judgment_file("colm-client", JUDGE))
    prefs = [a["preference"] for a in annotations]
    assert len(prefs) == 2 and None not in prefs  # the verdict is constrained to m or M
    theirs = run_json("alpaca_eval_check.py", str(layout.answer_file("colm-client")),
                      str(layout.answer_file("server__gpt-conv")), JUDGE)
    assert theirs["name"] == "colm-client"
    assert theirs["winrate"]["win_rate"] == pytest.approx(alpaca_eval.winrate(prefs)["win_rate"])
    assert theirs["leaderboard"]["n_total"] == 2
