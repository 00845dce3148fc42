"""Judge prompts, kept apart from the judging logic.

MT-Bench uses the published FastChat judge prompts (data/mt_bench_judge_prompts.jsonl).
Arena-Hard and AlpacaEval use the defaults below, written for this project: they ask for
the same verdict labels the official judges parse ("[[A>>B]]" ... "[[B>>A]]"; "m" or "M"),
so the official readers understand the judgments. For leaderboard-comparable numbers, pass
the official prompt with `--judge-prompt FILE` (JSON: {"system_prompt", "prompt_template"}).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from clients.eval.questions import data_file


class JudgePrompt(BaseModel):
    model_config = ConfigDict(extra="ignore")  # the published files carry more fields (name, category, ...)

    system_prompt: str
    prompt_template: str


ARENA_HARD = JudgePrompt(
    system_prompt=(
        "You are an impartial judge comparing the responses of two AI assistants, A and B, to the same user "
        "prompt. First write your own answer to the prompt. Then compare each assistant's answer with yours: "
        "point out mistakes and inaccurate information, and judge whether each answer is helpful, relevant and "
        "concise. If the prompt is ambiguous, asking for clarification is better than guessing. Consider "
        "creativity where it matters, and note important information that an answer misses.\n\n"
        "After your explanation, output exactly one of these labels as your final verdict:\n\n"
        "1. Assistant A is significantly better: [[A>>B]]\n"
        "2. Assistant A is slightly better: [[A>B]]\n"
        "3. Tie, relatively the same: [[A=B]]\n"
        "4. Assistant B is slightly better: [[B>A]]\n"
        "5. Assistant B is significantly better: [[B>>A]]\n\n"
        'Example output: "My final verdict is tie: [[A=B]]".'
    ),
    prompt_template=(
        "<|User Prompt|>\n{question_1}\n\n"
        "<|The Start of Assistant A's Answer|>\n{answer_1}\n<|The End of Assistant A's Answer|>\n\n"
        "<|The Start of Assistant B's Answer|>\n{answer_2}\n<|The End of Assistant B's Answer|>"
    ),
)
ARENA_HARD_CONTINUE = "continue your judgment and finish by outputting a final verdict label"

ALPACA_EVAL = JudgePrompt(
    system_prompt=(
        "You are an efficient assistant that selects the best of two language-model outputs for a given "
        "instruction, judging as most people would: accurate, helpful, relevant and well written."
    ),
    prompt_template=(
        "## Instruction\n\n{instruction}\n\n"
        "## Model Outputs\n\n"
        'Output of the model with identifier "m":\n"""\n{output_1}\n"""\n\n'
        'Output of the model with identifier "M":\n"""\n{output_2}\n"""\n\n'
        "## Task\n\nWhich model produced the better output? Answer with its identifier only, m or M, "
        "and nothing else (no quotes, spaces or new lines).\n\n## Best Model Identifier\n"
    ),
)


def load_prompt(path: Path | None, default: JudgePrompt) -> JudgePrompt:
    if path is None:
        return default
    return JudgePrompt.model_validate(json.loads(path.read_text(encoding="utf-8")))


def mt_bench_prompts() -> dict[str, dict]:
    """The published MT-Bench judge prompts by name (single-v1, single-math-v1-multi-turn, ...)."""
    with data_file("mt_bench_judge_prompts.jsonl").open(encoding="utf-8") as f:
        return {p["name"]: p for p in map(json.loads, f) if p}
