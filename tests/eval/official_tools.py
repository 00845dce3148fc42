"""Run the benchmarks' official tools, installed in their own environment, over colm-eval's files.

FastChat (`fschat`) and AlpacaEval (`alpaca-eval`) live in `.venv/official` (`make
official-tools`; see official/README.md for why not in the project's environment). The tests
call them as a subprocess and compare what they print with colm-eval's own figures.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from collections import defaultdict
from pathlib import Path
from statistics import mean

import pytest

from clients.eval.cli import main
from clients.eval.formats import fastchat
from clients.eval.formats.jsonio import read_jsonl
from clients.eval.layout import Layout
from clients.eval.questions import data_file

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_DIR = Path(__file__).resolve().parent / "official"
DEFAULT_PYTHON = ROOT / ".venv" / "official" / "bin" / "python"


def official_python() -> Path:
    """The official tools' interpreter: $COLM_OFFICIAL_PYTHON, else .venv/official (make official-tools)."""
    return Path(os.environ.get("COLM_OFFICIAL_PYTHON", DEFAULT_PYTHON))


def run_official(*args: str, timeout: float = 300) -> str:
    """stdout of the official tools' Python running `args`; its stderr in the error when it fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)  # the project's packages must not leak into the official environment
    done = subprocess.run([str(official_python()), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=OFFICIAL_DIR)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args[:2])} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done.stdout


def run_json(script: str, *args: str) -> dict:
    return json.loads(run_official(str(OFFICIAL_DIR / script), *args).strip().splitlines()[-1])


def fastchat_show_result(judgment_file: Path) -> dict[str, dict[str, float]]:
    """FastChat's `show_result.py --mode single` as printed: {"turn 1"|"turn 2"|"average": {model: score}}."""
    out = run_official("-m", "fastchat.llm_judge.show_result", "--mode", "single", "--bench-name", "mt_bench",
                       "--input-file", str(judgment_file))
    sections: dict[str, dict[str, float]] = {}
    current: dict[str, float] | None = None
    names = {"First turn": "turn 1", "Second turn": "turn 2", "Average": "average"}
    for line in out.splitlines():
        if (head := re.match(r"#+ (.+?) #+", line)) is not None:
            current = sections.setdefault(names[head.group(1)], {})
        elif current is not None and (row := re.match(r"^(\S+)\s+(?:\d\s+)?(-?\d+(?:\.\d+)?)$", line.strip())):
            current[row.group(1)] = float(row.group(2))
    return sections


def mt_bench_questions(tmp_path, categories=("writing", "writing", "math", "coding")):
    """The first questions of these categories, so both FastChat judges (plain and reference-based) play."""
    pool = read_jsonl(data_file("mt_bench_questions.jsonl"))
    chosen = []
    for category in categories:
        chosen.append(next(q for q in pool if q["category"] == category and q not in chosen))
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in chosen))
    return path, len(chosen)


def check_fastchat(out, judge_name: str, first_n: int) -> dict:
    """FastChat's pipeline and show_result over colm-eval's MT-Bench folder, compared with colm-eval's figures."""
    layout = Layout(out, "mt-bench")
    ours = fastchat.validate_judgments(layout.judgment_file("", judge_name))
    replay = run_json("fastchat_replay.py", str(layout.dir), judge_name, str(first_n), str(out / "fastchat.jsonl"))

    assert replay["models"] == layout.names()
    for name in layout.names():
        answers = fastchat.validate_answers(layout.answer_file(name))
        assert replay["answers"][name] == {str(q): a["choices"][0]["turns"] for q, a in answers.items()}
    # FastChat makes the same matches, builds the same prompts (the replay found each) and reads the same scores.
    key = lambda j: (j["question_id"], j["model"], j["turn"])  # noqa: E731
    theirs = {key(j): (j["judge"], j["score"]) for j in replay["judgments"]}
    assert theirs == {key(j): (j["judge"], j["score"]) for j in ours}
    assert replay["loaded"] == len(ours)

    shown = fastchat_show_result(layout.judgment_file("", judge_name))
    table = main(["table", "--out-dir", str(out), "--bench", "mt-bench", "--csv", str(out / "t.csv")])
    assert table == 0
    rows = {r["name"]: r for r in csv.DictReader((out / "t.csv").open()) if r["judge"] == judge_name}
    by_model: dict[str, list[dict]] = defaultdict(list)
    for j in ours:
        by_model[j["model"]].append(j)
    for name, judgments in by_model.items():
        rated = [j for j in judgments if j["score"] != fastchat.NO_RATING]
        assert int(rows[name]["parse_failures"]) == len(judgments) - len(rated)
        if not rated:
            assert name not in shown.get("average", {}) and rows[name]["quality"] == ""
            continue
        assert shown["average"][name] == pytest.approx(float(rows[name]["quality"]), abs=1e-4)
        for turn in (1, 2):
            scores = [j["score"] for j in rated if j["turn"] == turn]
            if scores:
                assert shown[f"turn {turn}"][name] == pytest.approx(mean(scores), abs=1e-4)
    return shown
