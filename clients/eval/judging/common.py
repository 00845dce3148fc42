"""The judging run shared by the three benchmarks: find what is unjudged, judge it concurrently.

Before judging, the judge's /v1/models card is read once: its context bounds the output
budget, and a vLLM-like server (vLLM, the stand-in) gets the benchmark's verdict as a
structured-outputs constraint (`--judge-structured auto`). What was decided is logged in one
line and kept in `<bench>/judges/<judge>.json` for the table.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients.eval.client import ChatClient, Reply
from clients.eval.config import JudgeArgs
from clients.eval.context import ContextWindow
from clients.eval.formats.jsonio import write_json_atomic
from clients.eval.layout import Layout
from clients.eval.model_info import JudgeCard, ModelInfo, probe_model
from clients.eval.questions import Question, load_questions
from clients.eval.runner import run_bounded
from clients.eval.verdicts import VERDICTS, VerdictFormat

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
    unparsed: int = 0  # verdicts the judge gave that the official parser cannot read
    clamped: int = 0  # judgments whose output budget was clamped to the judge's context
    structured: bool = False
    outputs: list[str] = field(default_factory=list)


def unparsed_reason(reply: Reply, wanted: str) -> str:
    """Why a judgment has no verdict: shown in the judgment file, counted in the table."""
    cut = f"; the judgment was cut off at max_tokens={reply.max_tokens}" if reply.cut_off else ""
    return f"no {wanted} in the judgment{cut}"


class JudgeRun(ABC):
    def __init__(self, args: JudgeArgs) -> None:
        self.args = args
        self.layout = Layout(args.out_dir, args.bench)
        self.missing = 0  # questions of the run that a model has no answer for
        self.unparsed = 0  # judgments written without a readable verdict
        self.verdict: VerdictFormat | None = None  # set when the judge takes structured outputs

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

    def decide_structured(self, info: ModelInfo | None) -> bool:
        if self.args.structured == "auto":
            return info is not None and info.vllm_like
        return self.args.structured == "on"

    async def run(self) -> JudgeReport:
        self.setup()
        questions = self.questions()
        todo = [m for name in self.names() for m in self.matches(name, questions)]
        info = await probe_model(self.args.judge)
        structured = self.decide_structured(info)
        self.verdict = VERDICTS[self.args.bench] if structured else None
        card = JudgeCard(judge=self.args.judge.model, base_url=self.args.judge.base_url, structured=structured,
                         owned_by=info.owned_by if info else None, max_model_len=info.max_model_len if info else None,
                         max_tokens=self.args.max_tokens)
        write_json_atomic(self.layout.judge_card(card.judge), card.model_dump(mode="json"))
        logger.info("%s judge %s: %d judgments to make; %s; context %s", self.args.bench, card.judge, len(todo),
                    f"verdicts constrained to {self.verdict.name} (structured outputs)" if self.verdict
                    else "official prompts, unconstrained", card.max_model_len or "unknown (clamped on a 400)")
        client = ChatClient(self.args.judge, window=ContextWindow(model=card.judge, max_model_len=card.max_model_len))
        try:
            failures = await run_bounded(todo, lambda m: self.judge(client, m), concurrency=self.args.concurrency,
                                         desc=f"judge {self.args.bench}",
                                         label=lambda m: f"{m.name} question {str(m.question.question_id)[:40]}")
        finally:
            self.finish()
            await client.close()
        return JudgeReport(bench=self.args.bench, judge=self.args.judge.model, judged=len(todo) - len(failures),
                           failed=len(failures), missing=self.missing, unparsed=self.unparsed,
                           clamped=client.window.clamped, structured=structured,
                           outputs=[str(p) for p in self.outputs()])
