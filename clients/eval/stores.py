"""Answer files of one output name: which questions are answered (resume) and adding answers."""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from clients.eval.client import Reply
from clients.eval.formats import alpaca_eval, arena_hard, fastchat
from clients.eval.formats.jsonio import append_jsonl, read_jsonl, write_json_atomic
from clients.eval.layout import Layout
from clients.eval.questions import Question, data_file
from clients.eval.usage import AnswerUsage


class AnswerStore(ABC):
    def __init__(self, layout: Layout, name: str) -> None:
        self.layout = layout
        self.name = name
        self.path = layout.answer_file(name)

    @abstractmethod
    def answered(self) -> set[int | str]:
        """Question ids that already have an answer: a rerun skips them."""

    @abstractmethod
    def _write(self, question: Question, replies: list[Reply]) -> None: ...

    def add(self, question: Question, replies: list[Reply], usage: AnswerUsage) -> None:
        """The answer first, then its usage: a crash in between costs a usage line, never an answer."""
        self._write(question, replies)
        append_jsonl(self.layout.usage_file(self.name), usage.model_dump(mode="json"))

    def prepare(self, questions_file: Path | None) -> None:
        """Copy the question files beside the answers, so the official tools run in this folder."""

    def finish(self, questions: list[Question]) -> None:
        """Called once the run is over (sorting, de-duplication); `questions` in their file's order."""


def _copy_if_missing(src: Path, dst: Path) -> None:
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


class MtBenchStore(AnswerStore):
    def answered(self) -> set[int | str]:
        return {r["question_id"] for r in read_jsonl(self.path)}

    def _write(self, question: Question, replies: list[Reply]) -> None:
        append_jsonl(self.path, fastchat.answer_record(
            question_id=question.question_id, name=self.name, turns=[r.text for r in replies]))

    def prepare(self, questions_file: Path | None) -> None:
        _copy_if_missing(questions_file or data_file("mt_bench_questions.jsonl"), self.layout.question_file)
        _copy_if_missing(data_file("mt_bench_reference_gpt4.jsonl"), self.layout.reference_file)
        _copy_if_missing(data_file("mt_bench_judge_prompts.jsonl"), self.layout.judge_prompts_file)

    def finish(self, questions: list[Question]) -> None:
        if self.path.exists():
            fastchat.reorg_answers(self.path)


class ArenaHardStore(AnswerStore):
    def answered(self) -> set[int | str]:
        return {r["question_id"] for r in read_jsonl(self.path)}

    def _write(self, question: Question, replies: list[Reply]) -> None:
        append_jsonl(self.path, arena_hard.answer_record(
            question_id=str(question.question_id), name=self.name,
            turns=[(r.text, r.completion_tokens) for r in replies]))

    def prepare(self, questions_file: Path | None) -> None:
        _copy_if_missing(questions_file or data_file("arena_hard_questions.jsonl"), self.layout.question_file)

    def finish(self, questions: list[Question]) -> None:
        """Sort by question id, last answer wins, as arena-hard's reorg_answer_file does."""
        if self.path.exists():
            by_id = {r["question_id"]: r for r in read_jsonl(self.path)}
            write_json_atomic(self.path, [by_id[k] for k in sorted(by_id)], lines=True)


class AlpacaEvalStore(AnswerStore):
    """model_outputs.json is one JSON list, so it is rewritten whole (atomically) on each answer."""

    def __init__(self, layout: Layout, name: str) -> None:
        super().__init__(layout, name)
        self._records: list[dict[str, Any]] = (
            list(alpaca_eval.validate_outputs(self.path).values()) if self.path.exists() else [])

    def answered(self) -> set[int | str]:
        return {r["instruction"] for r in self._records}

    def _write(self, question: Question, replies: list[Reply]) -> None:
        self._records.append(alpaca_eval.output_record(
            instruction=str(question.question_id), output=replies[-1].text, generator=self.name,
            dataset=question.raw.get("dataset")))
        write_json_atomic(self.path, self._records)

    def finish(self, questions: list[Question]) -> None:
        """Answers arrive in completion order; the file lists them in the instructions' order, as
        AlpacaEval's own outputs do. Instructions of an earlier run with another set go last."""
        if not self._records:
            return
        order = {str(q.question_id): i for i, q in enumerate(questions)}
        self._records.sort(key=lambda r: order.get(r["instruction"], len(order)))
        write_json_atomic(self.path, self._records)


STORES: dict[str, type[AnswerStore]] = {
    "mt-bench": MtBenchStore, "arena-hard": ArenaHardStore, "alpaca-eval": AlpacaEvalStore,
}
