"""The whole colm-eval flow (generate -> judge -> table) against the fake OpenAI server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.eval.cli import main
from clients.eval.formats import alpaca_eval, arena_hard, fastchat
from clients.eval.formats.jsonio import read_jsonl
from clients.eval.layout import Layout
from clients.eval.questions import data_file, load_jsonl_by_id


def generate(fake, out: Path, bench: str, model: str, *extra: str) -> int:
    return main(["generate", "--bench", bench, "--base-url", fake.url, "--model", model,
                 "--out-dir", str(out), "--retry-base", "0", *extra])


def judge(fake, out: Path, bench: str, *extra: str, judge_model: str = "judge") -> int:
    return main(["judge", "--bench", bench, "--judge-base-url", fake.url, "--judge-model", judge_model,
                 "--out-dir", str(out), "--retry-base", "0", *extra])


def test_mt_bench_generate_judge_table(fake, tmp_path, capsys):
    assert generate(fake, tmp_path, "mt-bench", "colm", "--limit", "3") == 0
    assert generate(fake, tmp_path, "mt-bench", "server/gpt-conv", "--limit", "3") == 0
    layout = Layout(tmp_path, "mt-bench")
    assert layout.names() == ["colm", "server__gpt-conv"]

    answers = fastchat.validate_answers(layout.answer_file("colm"), turns=2)
    assert sorted(answers) == [81, 82, 83]
    rec = answers[81]
    assert rec["model_id"] == "colm" and rec["choices"][0]["turns"][1].startswith("colm answer 2:")
    # The second turn is asked with the first answer in the conversation.
    second = [r for r in fake.state.requests if r["model"] == "colm" and len(r["messages"]) == 3]
    assert len(second) == 3 and second[0]["messages"][1]["role"] == "assistant"
    # FastChat's per-category temperature: 81-83 are writing questions.
    assert {r["temperature"] for r in fake.state.requests} == {0.7}
    assert layout.question_file.exists() and layout.reference_file.exists()

    usage = read_jsonl(layout.usage_file("colm"))
    assert len(usage) == 3 and usage[0]["model"] == "colm" and usage[0]["turns"] == 2
    assert usage[0]["colm"]["server_tokens"] == 300 and usage[0]["colm"]["cost_usd"] == pytest.approx(0.002)

    assert judge(fake, tmp_path, "mt-bench", "--limit", "3") == 0
    judgments = fastchat.validate_judgments(layout.judgment_file("colm", "judge"))
    assert len(judgments) == 12  # 2 models x 3 questions x 2 turns
    assert {j["score"] for j in judgments} == {8}
    assert {tuple(j["judge"]) for j in judgments} == {("judge", "single-v1"), ("judge", "single-v1-multi-turn")}
    assert "colm answer 2" in next(j for j in judgments if j["turn"] == 2 and j["model"] == "colm")["user_prompt"]

    plot = tmp_path / "plot.png"
    csv_path = tmp_path / "table.csv"
    capsys.readouterr()
    assert main(["table", "--out-dir", str(tmp_path), "--plot", str(plot), "--csv", str(csv_path)]) == 0
    out = capsys.readouterr().out
    assert "server/gpt-conv" in out and "colm" in out and "8.00" in out
    assert plot.stat().st_size > 1000
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 3 and "cost_usd" in lines[0]


def test_mt_bench_math_question_uses_reference_answer(fake, tmp_path):
    questions = tmp_path / "q.jsonl"
    math = next(r for r in read_jsonl(data_file("mt_bench_questions.jsonl")) if r["category"] == "math")
    questions.write_text(json.dumps(math) + "\n")
    assert generate(fake, tmp_path, "mt-bench", "colm-client", "--questions", str(questions)) == 0
    assert judge(fake, tmp_path, "mt-bench", "--questions", str(questions)) == 0
    judgments = read_jsonl(Layout(tmp_path, "mt-bench").judgment_file("colm-client", "judge"))
    assert {j["judge"][1] for j in judgments} == {"single-math-v1", "single-math-v1-multi-turn"}
    reference = load_jsonl_by_id(data_file("mt_bench_reference_gpt4.jsonl"))[math["question_id"]]
    assert all(reference["choices"][0]["turns"][0] in j["user_prompt"] for j in judgments)


def test_resume_makes_no_new_requests(fake, tmp_path, capsys):
    assert generate(fake, tmp_path, "mt-bench", "colm-client", "--limit", "2") == 0
    assert fake.state.count("colm-client") == 4
    assert generate(fake, tmp_path, "mt-bench", "colm-client", "--limit", "2") == 0
    assert fake.state.count("colm-client") == 4
    assert "0 answered, 2 already there" in capsys.readouterr().out
    # Raising the limit answers only the new question.
    assert generate(fake, tmp_path, "mt-bench", "colm-client", "--limit", "3") == 0
    assert fake.state.count("colm-client") == 6
    assert judge(fake, tmp_path, "mt-bench", "--limit", "3") == 0
    judged = fake.state.count("judge")
    assert judge(fake, tmp_path, "mt-bench", "--limit", "3") == 0
    assert fake.state.count("judge") == judged == 6


def test_retry_on_transient_503(fake, tmp_path):
    fake.state.fail_503["colm"] = 2
    assert generate(fake, tmp_path, "arena-hard", "colm", "--limit", "1", "--concurrency", "1") == 0
    assert fake.state.count("colm") == 3
    assert len(arena_hard.validate_answers(Layout(tmp_path, "arena-hard").answer_file("colm"))) == 1


def test_retries_exhausted_write_nothing_and_exit_1(fake, tmp_path):
    fake.state.fail_503["colm"] = 10
    assert generate(fake, tmp_path, "arena-hard", "colm", "--limit", "1", "--max-attempts", "2") == 1
    assert fake.state.count("colm") == 2
    assert not Layout(tmp_path, "arena-hard").answer_file("colm").exists()


def test_non_transient_error_is_not_retried(fake, tmp_path, capsys):
    assert generate(fake, tmp_path, "mt-bench", "broken", "--limit", "2") == 1
    assert fake.state.count("broken") == 2  # one attempt per question
    assert "2 failed" in capsys.readouterr().out
    assert not Layout(tmp_path, "mt-bench").answer_file("broken").exists()


def test_concurrency_is_bounded(fake, tmp_path):
    fake.state.delay_s = 0.05
    assert generate(fake, tmp_path, "arena-hard", "colm", "--limit", "8", "--concurrency", "3") == 0
    assert 2 <= fake.state.max_in_flight <= 3


def test_missing_rating_is_minus_one_and_counted(fake, tmp_path, capsys):
    assert generate(fake, tmp_path, "mt-bench", "colm", "--limit", "1") == 0
    assert judge(fake, tmp_path, "mt-bench", "--limit", "1", judge_model="bad-judge") == 0
    judgments = fastchat.validate_judgments(Layout(tmp_path, "mt-bench").judgment_file("colm", "bad-judge"))
    assert [j["score"] for j in judgments] == [-1, -1]
    capsys.readouterr()
    assert main(["table", "--out-dir", str(tmp_path), "--bench", "mt-bench", "--csv", str(tmp_path / "t.csv")]) == 0
    row = (tmp_path / "t.csv").read_text().splitlines()[1].split(",")
    header = (tmp_path / "t.csv").read_text().splitlines()[0].split(",")
    values = dict(zip(header, row))
    assert values["quality"] == "" and values["parse_failures"] == "2" and values["judged"] == "0"


def test_arena_hard_pairwise_with_swap(fake, tmp_path, capsys):
    for model in ("server/weak", "strong", "colm-client"):
        assert generate(fake, tmp_path, "arena-hard", model, "--limit", "4") == 0
    layout = Layout(tmp_path, "arena-hard")
    for name in layout.names():
        answers = arena_hard.validate_answers(layout.answer_file(name))
        assert len(answers) == 4
    rec = next(iter(arena_hard.validate_answers(layout.answer_file("strong")).values()))
    assert rec["conv_metadata"]["token_len"] == rec["choices"][0]["turns"][0]["token_len"] > 0

    assert judge(fake, tmp_path, "arena-hard", "--baseline", "server__weak") == 0
    strong = arena_hard.validate_judgments(layout.judgment_file("strong", "judge"))
    assert len(strong) == 4
    assert [g["score"] for g in strong[0]["games"]] == ["B>>A", "A>>B"]  # the swap: model is B, then A
    assert "strong answer" in strong[0]["games"][0]["user_prompt"].split("Assistant B's Answer|>")[1]
    assert not layout.judgment_file("server__weak", "judge").exists()  # the baseline is not judged

    capsys.readouterr()
    assert main(["table", "--out-dir", str(tmp_path), "--bench", "arena-hard", "--csv", str(tmp_path / "t.csv")]) == 0
    rows = {r.split(",")[1]: r.split(",") for r in (tmp_path / "t.csv").read_text().splitlines()[1:]}
    header = (tmp_path / "t.csv").read_text().splitlines()[0].split(",")
    quality = {name: dict(zip(header, row))["quality"] for name, row in rows.items()}
    assert float(quality["strong"]) == 100.0 and float(quality["colm-client"]) == 50.0
    assert quality["server__weak"] == ""


def test_arena_hard_baseline_file_and_missing_label_retry(fake, tmp_path):
    assert generate(fake, tmp_path / "base", "arena-hard", "server/weak", "--limit", "2") == 0
    baseline = Layout(tmp_path / "base", "arena-hard").answer_file("server__weak")
    assert generate(fake, tmp_path, "arena-hard", "strong", "--limit", "2") == 0
    assert judge(fake, tmp_path, "arena-hard", "--baseline", str(baseline), judge_model="bad-judge") == 0
    records = arena_hard.validate_judgments(Layout(tmp_path, "arena-hard").judgment_file("strong", "bad-judge"))
    assert all(g["score"] is None for r in records for g in r["games"])
    # No label: one follow-up turn asking for the verdict, as arena-hard does (2 attempts x 2 games x 2 questions).
    assert fake.state.count("bad-judge") == 8
    assert arena_hard.outcomes(records[0]) == ([], 2)


def test_alpaca_eval_outputs_and_win_rate(fake, tmp_path, capsys):
    instructions = [{"instruction": f"Write a line about topic {i}.", "dataset": "helpful_base"} for i in range(3)]
    qfile = tmp_path / "alpaca.json"
    qfile.write_text(json.dumps(instructions))
    assert generate(fake, tmp_path, "alpaca-eval", "strong", "--questions", str(qfile)) == 0
    assert generate(fake, tmp_path, "alpaca-eval", "server/weak", "--questions", str(qfile)) == 0
    layout = Layout(tmp_path, "alpaca-eval")
    outputs = alpaca_eval.validate_outputs(layout.answer_file("strong"))
    assert list(outputs) == [i["instruction"] for i in instructions]
    assert {r["generator"] for r in outputs.values()} == {"strong"}
    assert generate(fake, tmp_path, "alpaca-eval", "strong", "--questions", str(qfile)) == 0
    assert fake.state.count("strong") == 3  # resumed: nothing asked again

    # Reference outputs from another file, without a generator column.
    ref = tmp_path / "reference.json"
    ref.write_text(json.dumps([{"instruction": i["instruction"], "output": "plain text"} for i in instructions]))
    assert judge(fake, tmp_path, "alpaca-eval", "--baseline", str(ref)) == 0
    strong = alpaca_eval.validate_annotations(layout.judgment_file("strong", "judge"))
    assert [a["preference"] for a in strong] == [2.0, 2.0, 2.0]
    assert strong[0]["generator_1"] == "reference" and strong[0]["generator_2"] == "strong"
    weak = alpaca_eval.validate_annotations(layout.judgment_file("server__weak", "judge"))
    assert [a["preference"] for a in weak] == [1.5, 1.5, 1.5]  # the position bias cancels out
    capsys.readouterr()
    assert main(["table", "--out-dir", str(tmp_path), "--bench", "alpaca-eval"]) == 0
    assert "100.00" in capsys.readouterr().out


def test_plain_server_has_no_cost(fake, tmp_path, capsys):
    assert generate(fake, tmp_path, "arena-hard", "plain", "--limit", "1") == 0
    usage = read_jsonl(Layout(tmp_path, "arena-hard").usage_file("plain"))
    assert usage[0]["colm"] is None and usage[0]["completion_tokens"] > 0
    capsys.readouterr()
    assert main(["table", "--out-dir", str(tmp_path), "--csv", str(tmp_path / "t.csv")]) == 0
    header, row = (tmp_path / "t.csv").read_text().splitlines()
    assert dict(zip(header.split(","), row.split(",")))["cost_usd"] == ""


@pytest.mark.parametrize("argv, message", [
    (["generate", "--bench", "alpaca-eval", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"], "--questions"),
    (["generate", "--bench", "mt-bench", "--base-url", "ftp://x", "--model", "m"], "base_url"),
    (["judge", "--bench", "arena-hard", "--judge-base-url", "http://127.0.0.1:9/v1", "--judge-model", "j"], "--baseline"),
])
def test_bad_arguments_exit_2(argv, message, tmp_path, capsys):
    assert main([*argv, "--out-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
