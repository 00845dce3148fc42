"""Where each benchmark's files go: the layouts of FastChat, arena-hard-auto and AlpacaEval.

    <out>/judge_prompts.jsonl, mt_bench/question.jsonl,
    <out>/mt_bench/reference_answer/gpt-4.jsonl                    (copies: <out> is FastChat's data/)
    <out>/mt_bench/model_answer/<name>.jsonl                       FastChat llm_judge answers
    <out>/mt_bench/model_judgment/<judge>_single.jsonl             FastChat single-answer grading
    <out>/arena_hard/question.jsonl
    <out>/arena_hard/model_answer/<name>.jsonl                     arena-hard-auto v0.1 answers
    <out>/arena_hard/model_judgment/<judge>/<name>.jsonl           arena-hard-auto v0.1 judgments
    <out>/alpaca_eval/<name>/model_outputs.json                    AlpacaEval model outputs
    <out>/alpaca_eval/<name>/<judge>/annotations.json              AlpacaEval annotations
    <out>/<bench>/usage/<name>.jsonl  (alpaca: <name>/usage.jsonl) cost, tokens, latency per answer
    <out>/<bench>/judges/<judge>.json                              who judged, and how (structured, context)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from clients.eval.config import Bench

BENCH_DIRS: dict[str, str] = {"mt-bench": "mt_bench", "arena-hard": "arena_hard", "alpaca-eval": "alpaca_eval"}


def safe_name(model_id: str) -> str:
    """A file-safe output name; the official tools take the model name from the file name."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", model_id.replace("/", "__")).strip(".")
    if not name:
        raise ValueError(f"model id {model_id!r} gives an empty file name; pass --name")
    return name


@dataclass(frozen=True)
class Layout:
    root: Path
    bench: Bench

    @property
    def dir(self) -> Path:
        return self.root / BENCH_DIRS[self.bench]

    @property
    def question_file(self) -> Path:
        return self.dir / "question.jsonl"

    @property
    def judge_prompts_file(self) -> Path:
        """FastChat's data/judge_prompts.jsonl: `<out>` is its data/ folder."""
        return self.root / "judge_prompts.jsonl"

    @property
    def reference_file(self) -> Path:
        return self.dir / "reference_answer" / "gpt-4.jsonl"

    def answer_file(self, name: str) -> Path:
        if self.bench == "alpaca-eval":
            return self.dir / name / "model_outputs.json"
        return self.dir / "model_answer" / f"{name}.jsonl"

    def usage_file(self, name: str) -> Path:
        if self.bench == "alpaca-eval":
            return self.dir / name / "usage.jsonl"
        return self.dir / "usage" / f"{name}.jsonl"

    def judgment_file(self, name: str, judge: str) -> Path:
        if self.bench == "mt-bench":
            return self.dir / "model_judgment" / f"{safe_name(judge)}_single.jsonl"
        if self.bench == "arena-hard":
            return self.dir / "model_judgment" / safe_name(judge) / f"{name}.jsonl"
        return self.dir / name / safe_name(judge) / "annotations.json"

    def judge_card(self, judge: str) -> Path:
        return self.dir / "judges" / f"{safe_name(judge)}.json"

    def names(self) -> list[str]:
        """Output names that have answers, sorted."""
        if self.bench == "alpaca-eval":
            return sorted(p.parent.name for p in self.dir.glob("*/model_outputs.json"))
        return sorted(p.stem for p in (self.dir / "model_answer").glob("*.jsonl"))

    def judges(self) -> list[str]:
        """Judge names (file-safe) that have judgments here."""
        if self.bench == "mt-bench":
            return sorted(p.name[: -len("_single.jsonl")] for p in (self.dir / "model_judgment").glob("*_single.jsonl"))
        if self.bench == "arena-hard":
            return sorted(p.name for p in (self.dir / "model_judgment").glob("*") if p.is_dir())
        return sorted({p.parent.name for p in self.dir.glob("*/*/annotations.json")})
