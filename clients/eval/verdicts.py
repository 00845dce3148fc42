"""The verdict each benchmark's judge must give, as a vLLM structured-outputs regex.

On a judge that takes vLLM's `structured_outputs` (vLLM, the stand-in) the judgment is
constrained to the benchmark's verdict, so even a small judge ends with one the official
parser reads. The reasoning before it may not contain "[" (so the verdict is the only
bracketed label, the one FastChat's and arena-hard's parsers find first) and is bounded in
characters by the output budget: every token is at least one character, so the verdict
always fits before max_tokens cuts the judgment off. A judge that needs longer reasoning
needs a larger --judge-max-tokens.

Real judges (OpenAI and the like) get the same official prompts and no constraint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VERDICT_RESERVE = 12  # tokens kept for the verdict itself ("[[10]]", "[[A>>B]]") and a separator
# The reasoning bound is rounded down to a multiple of this, so judgments whose budgets were
# clamped to slightly different rooms share one regex, which vLLM compiles once (1-4 s on CPU).
BOUND_STEP = 64


@dataclass(frozen=True)
class VerdictFormat:
    name: str
    verdict: str  # regex of the verdict the official parser reads
    reasoning: bool  # free text may come before the verdict

    def regex(self, max_tokens: int) -> str:
        if not self.reasoning:
            return self.verdict
        bound = max(0, max_tokens - VERDICT_RESERVE)
        if bound >= BOUND_STEP:
            bound -= bound % BOUND_STEP
        return rf"[^\[]{{0,{bound}}}{self.verdict}"

    def extra_body(self, max_tokens: int) -> dict[str, Any]:
        """The request field for a budget of `max_tokens` (vLLM >= 0.10 `structured_outputs`)."""
        return {"structured_outputs": {"regex": self.regex(max_tokens)}}


# FastChat single-answer grading: "[[rating]]", 1-10 (fastchat/llm_judge/common.py one_score_pattern).
MT_BENCH_SINGLE = VerdictFormat("mt-bench single", r"\[\[(10|[1-9])\]\]", reasoning=True)
# arena-hard-auto v0.1: one of the five labels of its judge prompt.
ARENA_HARD = VerdictFormat("arena-hard", r"\[\[(A>>B|A>B|A=B|B>A|B>>A)\]\]", reasoning=True)
# AlpacaEval 2's classifier protocol: the identifier of the better output, and nothing else.
ALPACA_EVAL = VerdictFormat("alpaca-eval", r"(m|M)", reasoning=False)

VERDICTS: dict[str, VerdictFormat] = {"mt-bench": MT_BENCH_SINGLE, "arena-hard": ARENA_HARD, "alpaca-eval": ALPACA_EVAL}
