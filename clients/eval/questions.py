"""The benchmarks' questions, read from the project's own copies or from a file the user passes."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from clients.eval.config import Bench

# FastChat's per-category sampling temperatures for MT-Bench (fastchat/llm_judge/common.py).
MT_BENCH_TEMPERATURE = {
    "writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0,
    "coding": 0.0, "reasoning": 0.0, "stem": 0.1, "humanities": 0.1,
}
# Categories whose MT-Bench judging uses the GPT-4 reference answers.
NEED_REF_CATS = ("math", "reasoning", "coding")

PACKAGED = {"mt-bench": "mt_bench_questions.jsonl", "arena-hard": "arena_hard_questions.jsonl"}


class Question(BaseModel):
    """A question as every benchmark has it: an id, a category and the user turns."""

    question_id: int | str
    category: str = ""
    turns: list[str] = Field(min_length=1)
    raw: dict[str, Any] = Field(default_factory=dict, description="The record as read, for the judges.")


def data_file(name: str) -> Path:
    """A file shipped in clients/eval/data."""
    return Path(str(resources.files("clients.eval") / "data" / name))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_questions(bench: Bench, path: Path | None = None, *, limit: int | None = None) -> list[Question]:
    """The questions in file order; `limit` keeps the first N, as FastChat's --question-end does."""
    if path is None:
        if bench not in PACKAGED:
            raise ValueError(f"{bench}: its instruction set is not shipped (no offline copy); pass --questions FILE")
        path = data_file(PACKAGED[bench])
    loader = {"mt-bench": _mt_bench, "arena-hard": _arena_hard, "alpaca-eval": _alpaca_eval}[bench]
    questions = loader(path)
    _check_unique(path, questions)
    return questions[:limit] if limit else questions


def _mt_bench(path: Path) -> list[Question]:
    return [Question(question_id=r["question_id"], category=r.get("category", ""), turns=r["turns"], raw=r)
            for r in read_jsonl(path)]


def _arena_hard(path: Path) -> list[Question]:
    return [Question(question_id=r["question_id"], category=r.get("category", ""),
                     turns=[t["content"] for t in r["turns"]], raw=r) for r in read_jsonl(path)]


def _alpaca_eval(path: Path) -> list[Question]:
    """AlpacaEval identifies an example by its instruction text; a JSON list or JSONL is accepted."""
    text = path.read_text(encoding="utf-8")
    records = json.loads(text) if text.lstrip().startswith("[") else read_jsonl(path)
    return [Question(question_id=r["instruction"], category=r.get("dataset", ""), turns=[r["instruction"]], raw=r)
            for r in records]


def _check_unique(path: Path, questions: list[Question]) -> None:
    ids = [q.question_id for q in questions]
    if len(set(ids)) != len(ids):
        dupes = sorted({str(i)[:60] for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"{path}: duplicate question ids {dupes}")


def load_jsonl_by_id(path: Path) -> dict[Any, dict[str, Any]]:
    return {r["question_id"]: r for r in read_jsonl(path)}
