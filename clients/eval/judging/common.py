"""The judging run shared by the three benchmarks: find what is unjudged, judge it concurrently."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients.eval.client import ChatClient
from clients.eval.config import JudgeArgs
from clients.eval.layout import Layout
from clients.eval.questions import Question, load_questions
from clients.eval.runner import run_bounded

logger = logging.getLogger("clients.eval")


@dataclass
class Match:
    """One judge call (or pair of calls, for pairwise benchmarks) to make."""

    question: Question
    name: str
    answer: dict[str, Any]
    turn: int = 1
    baseline: dict[str, Any] | None = None


@dataclass
class JudgeReport:
    bench: str
    judge: str
    judged: int
    failed: int
    missing: int = 0
    outputs: list[str] = field(default_factory=list)


class JudgeRun(ABC):
    def __init__(self, args: JudgeArgs) -> None:
        self.args = args
        self.layout = Layout(args.out_dir, args.bench)
        self.missing = 0  # questions of the run that a model has no answer for

    def setup(self) -> None:
        """Load prompts, baselines and what is already judged (a rerun skips it)."""

    def questions(self) -> list[Question]:
        return load_questions(self.args.bench, self.args.questions, limit=self.args.limit)

    def names(self) -> list[str]:
        names = self.args.models or self.layout.names()
        if not names:
            raise ValueError(f"no answers to judge under {self.layout.dir}; run `colm-eval generate` first")
        return names

    @abstractmethod
    def matches(self, name: str, questions: list[Question]) -> list[Match]: ...

    @abstractmethod
    async def judge(self, client: ChatClient, match: Match) -> None: ...

    def finish(self) -> None:
        """Called once the run is over."""

    @abstractmethod
    def outputs(self) -> list[Path]: ...

    async def run(self) -> JudgeReport:
        self.setup()
        questions = self.questions()
        todo = [m for name in self.names() for m in self.matches(name, questions)]
        logger.info("%s judge %s: %d judgments to make", self.args.bench, self.args.judge.model, len(todo))
        client = ChatClient(self.args.judge)
        try:
            failures = await run_bounded(todo, lambda m: self.judge(client, m), concurrency=self.args.concurrency,
                                         desc=f"judge {self.args.bench}",
                                         label=lambda m: f"{m.name} question {str(m.question.question_id)[:40]}")
        finally:
            self.finish()
            await client.close()
        return JudgeReport(bench=self.args.bench, judge=self.args.judge.model, judged=len(todo) - len(failures),
                           failed=len(failures), missing=self.missing, outputs=[str(p) for p in self.outputs()])
