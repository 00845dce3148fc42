"""AlpacaEval pairwise preference against reference outputs, giving a win rate.

The judge picks "m" or "M" (AlpacaEval 2's classifier protocol). Each instruction is judged
in both orders to cancel position bias; its preference is the mean of the readable verdicts
(1 = reference wins, 2 = model wins, 1.5 = split), or null when neither verdict is readable,
with a `parse_error` saying so; the table counts those.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from clients.eval.client import ChatClient
from clients.eval.formats import alpaca_eval
from clients.eval.formats.jsonio import write_json_atomic
from clients.eval.judging.arena_hard import resolve_baseline
from clients.eval.client import Reply
from clients.eval.judging.common import JudgeRun, Match, unparsed_reason
from clients.eval.prompts import ALPACA_EVAL, load_prompt
from clients.eval.questions import Question

MAX_VERDICT_TOKENS = 16  # the verdict is one identifier; a longer budget only buys rambling


def preference(first: str | None, second: str | None) -> float | None:
    """Game 1 shows m = reference, M = model; game 2 swaps them."""
    prefs = [p for p in ({"m": 1.0, "M": 2.0}.get(first or ""), {"m": 2.0, "M": 1.0}.get(second or "")) if p]
    return sum(prefs) / len(prefs) if prefs else None


class AlpacaEvalJudge(JudgeRun):
    def setup(self) -> None:
        path = resolve_baseline(self.args.baseline, self.layout)
        default = path.parent.name if path.name == "model_outputs.json" else path.stem
        self.reference = alpaca_eval.validate_outputs(path, need_generator=False)
        for rec in self.reference.values():
            rec.setdefault("generator", default)
        self.reference_name = next(iter(self.reference.values()))["generator"] if self.reference else default
        self.prompt = load_prompt(self.args.judge_prompt, ALPACA_EVAL)
        self.annotations: dict[str, list[dict[str, Any]]] = {}

    def questions(self) -> list[Question]:
        return []  # the instructions are those of each model's outputs

    def names(self) -> list[str]:
        return [n for n in super().names() if n != self.reference_name]

    def matches(self, name: str, questions: list[Question]) -> list[Match]:
        outputs = alpaca_eval.validate_outputs(self.layout.answer_file(name))
        path = self.layout.judgment_file(name, self.args.judge.model)
        self.annotations[name] = alpaca_eval.validate_annotations(path) if path.exists() else []
        done = {r["instruction"] for r in self.annotations[name]}
        found: list[Match] = []
        for instruction, rec in list(outputs.items())[: self.args.limit]:
            if instruction not in self.reference:
                self.missing += 1
            elif instruction not in done:
                found.append(Match(question=Question(question_id=instruction, turns=[instruction]), name=name,
                                   answer=rec, baseline=self.reference[instruction]))
        return found

    async def judge(self, client: ChatClient, match: Match) -> None:
        assert match.baseline is not None
        instruction, ref, out = str(match.question.question_id), match.baseline["output"], match.answer["output"]
        first, second = await asyncio.gather(self._game(client, instruction, ref, out),
                                             self._game(client, instruction, out, ref))
        pref = preference(alpaca_eval.parse_choice(first.text), alpaca_eval.parse_choice(second.text))
        error = None if pref is not None else unparsed_reason(first, "m or M verdict in either order")
        self.unparsed += error is not None
        self.annotations[match.name].append(alpaca_eval.annotation_record(
            instruction=instruction, reference=match.baseline, model=match.answer, annotator=self.args.judge.model,
            preference=pref, raw_completion=[first.text, second.text], parse_error=error))
        write_json_atomic(self.layout.judgment_file(match.name, self.args.judge.model), self.annotations[match.name])

    async def _game(self, client: ChatClient, instruction: str, output_1: str, output_2: str) -> Reply:
        text = self.prompt.prompt_template.format(instruction=instruction, output_1=output_1, output_2=output_2)
        messages = [{"role": "system", "content": self.prompt.system_prompt}, {"role": "user", "content": text}]
        return await client.complete(messages, max_tokens=min(self.args.max_tokens, MAX_VERDICT_TOKENS),
                                     temperature=0.0, verdict=self.verdict)

    def outputs(self) -> list[Path]:
        return [self.layout.judgment_file(n, self.args.judge.model) for n in self.annotations]
