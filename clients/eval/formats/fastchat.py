"""FastChat `llm_judge` (MT-Bench) files: model answers and single-answer judgments.

Mirrors fastchat/llm_judge: `load_model_answers` keys answers by file stem and
`question_id`; `reorg_answer_file` needs integer question ids; `run_judge_single` reads
`choices[0]["turns"][i]` as strings; `show_result.py --mode single` reads the judgment
columns `model`, `score` (-1 = no rating) and `turn`.
"""

from __future__ import annotations

import ast
import re
import time
import uuid
from pathlib import Path
from typing import Any

from clients.eval.formats.jsonio import (
    FormatError,
    read_jsonl,
    require,
    write_json_atomic,
)

# The patterns of fastchat/llm_judge/common.py: "[[8]]", falling back to "[8]".
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
NO_RATING = -1


def answer_record(*, question_id: int | str, name: str, turns: list[str]) -> dict[str, Any]:
    return {
        "question_id": question_id,
        "answer_id": uuid.uuid4().hex,
        "model_id": name,
        "choices": [{"index": 0, "turns": turns}],
        "tstamp": time.time(),
    }


def judgment_record(*, question_id: int | str, model: str, judge: tuple[str, str], user_prompt: str,
                    judgment: str, score: float, turn: int, parse_error: str | None = None) -> dict[str, Any]:
    """FastChat's record; `parse_error` (ours, which FastChat's readers ignore) says why score is -1."""
    return {
        "question_id": question_id, "model": model, "judge": list(judge), "user_prompt": user_prompt,
        "judgment": judgment, "score": score, "turn": turn, "tstamp": time.time(), "parse_error": parse_error,
    }


def parse_rating(judgment: str) -> float:
    """The judge's rating as FastChat reads it, or -1 when there is none (never a guess)."""
    match = ONE_SCORE.search(judgment) or ONE_SCORE_BACKUP.search(judgment)
    return ast.literal_eval(match.groups()[0]) if match else NO_RATING


def reorg_answers(path: Path) -> None:
    """Sort by question id and keep the last answer per id, as FastChat's reorg_answer_file does."""
    by_id = {r["question_id"]: r for r in read_jsonl(path)}
    write_json_atomic(path, [by_id[k] for k in sorted(by_id, key=int)], lines=True)


def validate_answers(path: Path, *, turns: int | None = None) -> dict[int, dict[str, Any]]:
    """Answers by question id, checked the way FastChat's loaders and judges access them."""
    answers: dict[int, dict[str, Any]] = {}
    for n, rec in enumerate(read_jsonl(path), 1):
        where = f"line {n}"
        qid = require(path, where, rec, "question_id", int)
        require(path, where, rec, "answer_id", str)
        require(path, where, rec, "model_id", str)
        require(path, where, rec, "tstamp", (int, float))
        choices = require(path, where, rec, "choices", list)
        if not choices:
            raise FormatError(path, where, "choices is empty")
        require(path, where, choices[0], "index", int)
        got = require(path, where, choices[0], "turns", list)
        if not all(isinstance(t, str) for t in got):
            raise FormatError(path, where, "turns must be strings")
        if turns is not None and len(got) != turns:
            raise FormatError(path, where, f"{len(got)} turns, expected {turns}")
        answers[qid] = rec
    return answers


def validate_judgments(path: Path) -> list[dict[str, Any]]:
    """Single-answer judgments as show_result.py and load_single_model_judgments read them."""
    records = read_jsonl(path)
    for n, rec in enumerate(records, 1):
        where = f"line {n}"
        require(path, where, rec, "question_id", int)
        require(path, where, rec, "model", str)
        judge = require(path, where, rec, "judge", list)
        if len(judge) != 2 or not all(isinstance(j, str) for j in judge):
            raise FormatError(path, where, "judge must be [judge_model, prompt_name]")
        score = require(path, where, rec, "score", (int, float))
        if score != NO_RATING and not 0 <= score <= 10:
            raise FormatError(path, where, f"score {score} is outside 0-10 and not -1")
        if require(path, where, rec, "turn", int) not in (1, 2):
            raise FormatError(path, where, "turn must be 1 or 2")
        require(path, where, rec, "judgment", str)
        require(path, where, rec, "user_prompt", str)
        require(path, where, rec, "tstamp", (int, float))
        if rec.get("parse_error") is not None and score != NO_RATING:
            raise FormatError(path, where, "a judgment with a parse_error must have score -1")
    return records
