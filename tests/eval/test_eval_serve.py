"""colm-eval against the real embedded app: the router answers, the embedded upstream judges.

Small on purpose (MT-Bench, 2 questions for colm-client and 1 for colm, 64-token answers and
judgments) so it finishes in a few minutes on CPU. The stand-in's verdicts are constrained
to "[[rating]]" (structured outputs, as `--judge-structured auto` decides for it); a judgment
that still has none is recorded with score -1 and counted, never invented.
"""

from __future__ import annotations

import csv

import pytest

from clients.eval.cli import main
from clients.eval.formats import fastchat
from clients.eval.formats.jsonio import read_jsonl
from clients.eval.layout import Layout

pytestmark = pytest.mark.serve


def _generate(app_url: str, out, model: str, limit: int) -> int:
    return main(["generate", "--bench", "mt-bench", "--base-url", f"{app_url}/v1", "--model", model,
                 "--limit", str(limit), "--max-tokens", "64", "--concurrency", "2", "--out-dir", str(out)])


def test_mt_bench_generate_judge_table_on_embedded_app(app_url, tmp_path, capsys):
    assert _generate(app_url, tmp_path, "colm-client", 2) == 0
    assert _generate(app_url, tmp_path, "colm", 1) == 0
    layout = Layout(tmp_path, "mt-bench")

    client_answers = fastchat.validate_answers(layout.answer_file("colm-client"), turns=2)
    colm_answers = fastchat.validate_answers(layout.answer_file("colm"), turns=2)
    assert sorted(client_answers) == [81, 82] and sorted(colm_answers) == [81]
    assert any(t.strip() for a in client_answers.values() for t in a["choices"][0]["turns"])

    # Cost beside quality: the colm usage of every answer is in the sidecar.
    client_usage = read_jsonl(layout.usage_file("colm-client"))
    colm_usage = read_jsonl(layout.usage_file("colm"))
    assert len(client_usage) == 2 and len(colm_usage) == 1
    assert all(u["colm"] is not None and u["colm"]["server_tokens"] == 0 for u in client_usage)
    assert colm_usage[0]["colm"]["server_tokens"] > 0 and colm_usage[0]["colm"]["cost_usd"] > 0
    assert colm_usage[0]["colm"]["client_tokens"] > 0 and colm_usage[0]["latency_s"] > 0

    # Resume: a second run answers nothing new and leaves the answers as they were.
    ids = {q: a["answer_id"] for q, a in client_answers.items()}
    capsys.readouterr()
    assert _generate(app_url, tmp_path, "colm-client", 2) == 0
    assert "0 answered, 2 already there" in capsys.readouterr().out
    assert {q: a["answer_id"] for q, a in fastchat.validate_answers(layout.answer_file("colm-client")).items()} == ids

    assert main(["judge", "--bench", "mt-bench", "--judge-base-url", f"{app_url}/upstream/v1",
                 "--judge-model", "smollm2-local", "--judge-max-tokens", "64", "--limit", "2",
                 "--concurrency", "2", "--out-dir", str(tmp_path)]) == 0
    judgments = fastchat.validate_judgments(layout.judgment_file("colm", "smollm2-local"))
    assert sorted((j["model"], j["question_id"], j["turn"]) for j in judgments) == [
        ("colm", 81, 1), ("colm", 81, 2),
        ("colm-client", 81, 1), ("colm-client", 81, 2), ("colm-client", 82, 1), ("colm-client", 82, 2)]
    assert all(j["score"] == -1 or 0 <= j["score"] <= 10 for j in judgments)
    assert all(j["judgment"] for j in judgments)

    table_csv, plot = tmp_path / "table.csv", tmp_path / "plot.png"
    assert main(["table", "--out-dir", str(tmp_path), "--csv", str(table_csv), "--plot", str(plot)]) == 0
    rows = {r["model"]: r for r in csv.DictReader(table_csv.open())}
    assert set(rows) == {"colm", "colm-client"}
    assert int(rows["colm-client"]["judged"]) + int(rows["colm-client"]["parse_failures"]) == 4
    assert int(rows["colm"]["judged"]) + int(rows["colm"]["parse_failures"]) == 2
    assert float(rows["colm"]["cost_usd"]) > float(rows["colm-client"]["cost_usd"]) == 0.0
    assert plot.exists()
