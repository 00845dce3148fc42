"""Arena-Hard pairwise judging against a baseline, as arena-hard-auto v0.1 `gen_judgment.py` does.

Each question is judged twice with the answers swapped (game 1: A = baseline, B = model;
game 2: A = model, B = baseline) to cancel position bias. A judgment without a verdict label
gets one more turn asking for it; a judgment with conflicting labels has score null. A game
without a usable label has score null and a `parse_error` saying why; the table counts it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from clients.eval.client import ChatClient
from clients.eval.formats import arena_hard
from clients.eval.formats.jsonio import append_jsonl, read_jsonl
from clients.eval.judging.common import JudgeRun, Match, unparsed_reason
from clients.eval.layout import Layout
from clients.eval.prompts import ARENA_HARD, ARENA_HARD_CONTINUE, load_prompt
from clients.eval.questions import Question

ATTEMPTS = 2  # arena-hard's number_of_judgment_attempts


def resolve_baseline(value: str | None, layout: Layout) -> Path:
    """--baseline is a file, or the output name of answers already in this folder."""
    if not value:
        raise ValueError(f"{layout.bench} judging is pairwise: pass --baseline FILE or --baseline NAME")
    for path in (Path(value), layout.answer_file(value)):
        if path.is_file():
            return path
    raise ValueError(f"--baseline {value!r}: neither a file nor answers in {layout.dir} (known: {layout.names()})")


def prompt_args(question: Question, first: dict[str, Any], second: dict[str, Any]) -> dict[str, str]:
    """{question_i} and {answer_i}: the first answer's turns, then the second's."""
    args = {f"question_{i + 1}": turn for i, turn in enumerate(question.turns)}
    contents = [t["content"] for t in first["choices"][0]["turns"]] + [t["content"] for t in second["choices"][0]["turns"]]
    args.update({f"answer_{i + 1}": text for i, text in enumerate(contents)})
    return args


class ArenaHardJudge(JudgeRun):
    def setup(self) -> None:
        path = resolve_baseline(self.args.baseline, self.layout)
        self.baseline = arena_hard.validate_answers(path)
        self.baseline_name = next(iter(self.baseline.values()))["model_id"] if self.baseline else path.stem
        self.prompt = load_prompt(self.args.judge_prompt, ARENA_HARD)

    def names(self) -> list[str]:
        return [n for n in super().names() if n != self.baseline_name]

    def matches(self, name: str, questions: list[Question]) -> list[Match]:
        done = {r["question_id"] for r in read_jsonl(self.layout.judgment_file(name, self.args.judge.model))}
        answers = arena_hard.validate_answers(self.layout.answer_file(name))
        found: list[Match] = []
        for q in questions:
            qid = str(q.question_id)
            if qid not in answers or qid not in self.baseline:
                self.missing += 1
            elif qid not in done:
                found.append(Match(question=q, name=name, answer=answers[qid], baseline=self.baseline[qid]))
        return found

    async def judge(self, client: ChatClient, match: Match) -> None:
        assert match.baseline is not None
        games = await asyncio.gather(
            self._game(client, match.question, match.baseline, match.answer),
            self._game(client, match.question, match.answer, match.baseline),
        )
        record = {"question_id": str(match.question.question_id), "model": match.name,
                  "judge": self.args.judge.model, "games": list(games)}
        append_jsonl(self.layout.judgment_file(match.name, self.args.judge.model), record)

    async def _game(self, client: ChatClient, question: Question, a: dict[str, Any], b: dict[str, Any]) -> dict:
        user_prompt = self.prompt.prompt_template.format(**prompt_args(question, a, b))
        conv = [{"role": "system", "content": self.prompt.system_prompt}, {"role": "user", "content": user_prompt}]
        judgment, score, try_again = "", None, True
        for _ in range(ATTEMPTS):
            reply = await client.complete(conv, max_tokens=self.args.max_tokens, temperature=0.0, verdict=self.verdict)
            judgment += "\n" + reply.text
            score, try_again = arena_hard.get_score(judgment)
            conv.append({"role": "assistant", "content": reply.text})
            if not try_again:
                break
            conv.append({"role": "user", "content": ARENA_HARD_CONTINUE})
        error = None
        if score not in arena_hard.GAME1:
            error = (unparsed_reason(reply, "verdict label") if try_again
                     else f"no usable verdict label ({score or 'conflicting labels'})")
            self.unparsed += 1
        return {"user_prompt": user_prompt, "judgment": judgment, "score": score, "parse_error": error}

    def outputs(self) -> list[Path]:
        return [self.layout.judgment_file(n, self.args.judge.model) for n in self.names()]
