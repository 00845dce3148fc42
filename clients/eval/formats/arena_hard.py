"""arena-hard-auto v0.1 files: model answers and pairwise judgments against a baseline.

Mirrors arena-hard-auto (v0.1): `utils.load_model_answers` keys answers by file stem and
`question_id`; `gen_judgment.py` reads `choices[0]["turns"][i]["content"]` and the judge's
label with `\\[\\[([AB<>=]+)\\]\\]`; `show_result.py` reads `games[i]["score"]`, the answer's
`turns[0]["token_len"]` or `conv_metadata["token_len"]`, and for style control the
`conv_metadata` header/list/bold counts.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

from clients.eval.formats.jsonio import FormatError, read_jsonl, require

LABEL = re.compile(r"\[\[([AB<>=]+)\]\]")
# show_result.py: game 1 shows A = baseline, B = model; game 2 swaps them.
# The model's outcome per label in each game, and strong verdicts count `weight` times.
GAME1 = {"A>>B": "loss!", "A>B": "loss", "A=B": "tie", "B>A": "win", "B>>A": "win!"}
GAME2 = {"A>>B": "win!", "A>B": "win", "A=B": "tie", "B>A": "loss", "B>>A": "loss!"}
CODE_BLOCK = re.compile(r"```([^`]*)```")


def markdown_counts(text: str) -> dict[str, dict[str, int]]:
    """Style features of an answer outside code blocks, under arena-hard's key names."""
    text = CODE_BLOCK.sub("", text)
    lines = text.splitlines()
    headers = {f"h{i}": sum(1 for ln in lines if re.match(rf"^#{{{i}}}\s", ln)) for i in range(1, 7)}
    return {
        "header_count": headers,
        "list_count": {
            "ordered": sum(1 for ln in lines if re.match(r"^\s*\d+\.\s", ln)),
            "unordered": sum(1 for ln in lines if re.match(r"^\s*[-*+]\s", ln)),
        },
        "bold_count": {"**": len(re.findall(r"\*\*[^*\n]+\*\*", text)), "__": len(re.findall(r"__[^_\n]+__", text))},
    }


def answer_record(*, question_id: str, name: str, turns: list[tuple[str, int]]) -> dict[str, Any]:
    """`turns` holds (text, token_len); token_len is the completion tokens as the endpoint counted them."""
    token_len = sum(n for _, n in turns)
    return {
        "question_id": question_id,
        "answer_id": uuid.uuid4().hex,
        "model_id": name,
        "choices": [{"index": 0, "turns": [{"content": text, "token_len": n} for text, n in turns]}],
        "tstamp": time.time(),
        "conv_metadata": {"token_len": token_len, **markdown_counts("\n".join(t for t, _ in turns))},
    }


def get_score(judgment: str) -> tuple[str | None, bool]:
    """(label, try_again) as gen_judgment.py decides: one distinct label, none (ask again), or a conflict."""
    labels = {m.strip("\n") for m in LABEL.findall(judgment) if m}
    if not labels:
        return None, True
    if len(labels) == 1:
        return labels.pop(), False
    return None, False


def outcomes(record: dict[str, Any], *, weight: int = 3) -> tuple[list[str], int]:
    """The model's battles vs the baseline ("win"/"loss"/"tie") and the games without a usable label.

    As in v0.1 show_result.py, a game without one of the five labels adds no battle.
    """
    battles: list[str] = []
    failed = 0
    for game, table in zip(record["games"], (GAME1, GAME2)):
        outcome = table.get(game.get("score") or "")
        if outcome is None:
            failed += 1
            continue
        battles += [outcome.rstrip("!")] * (weight if outcome.endswith("!") else 1)
    return battles, failed


def validate_answers(path: Path) -> dict[str, dict[str, Any]]:
    answers: dict[str, dict[str, Any]] = {}
    for n, rec in enumerate(read_jsonl(path), 1):
        where = f"line {n}"
        qid = require(path, where, rec, "question_id", str)
        require(path, where, rec, "answer_id", str)
        require(path, where, rec, "model_id", str)
        require(path, where, rec, "tstamp", (int, float))
        choices = require(path, where, rec, "choices", list)
        if not choices:
            raise FormatError(path, where, "choices is empty")
        turns = require(path, where, choices[0], "turns", list)
        if not turns:
            raise FormatError(path, where, "turns is empty")
        for turn in turns:
            require(path, where, turn, "content", str)
        meta = require(path, where, rec, "conv_metadata", dict)
        require(path, f"{where} conv_metadata", meta, "token_len", int)
        for key in ("header_count", "list_count", "bold_count"):
            counts = require(path, f"{where} conv_metadata", meta, key, dict)
            if not all(isinstance(v, int) for v in counts.values()):
                raise FormatError(path, where, f"conv_metadata.{key} values must be integers")
        answers[qid] = rec
    return answers


def validate_judgments(path: Path) -> list[dict[str, Any]]:
    records = read_jsonl(path)
    for n, rec in enumerate(records, 1):
        where = f"line {n}"
        require(path, where, rec, "question_id", str)
        require(path, where, rec, "model", str)
        require(path, where, rec, "judge", str)
        games = require(path, where, rec, "games", list)
        if len(games) != 2:
            raise FormatError(path, where, "a pairwise judgment has two games")
        for game in games:
            require(path, where, game, "user_prompt", str)
            require(path, where, game, "judgment", str)
            require(path, where, game, "score", (str, type(None)))
    return records
