"""MT-Bench single-answer grading (1-10) as FastChat's `gen_judgment.py --mode single` does it.

Turn 1 is graded with single-v1 (single-math-v1 with the GPT-4 reference answer for math,
reasoning and coding); turn 2 with the multi-turn prompts, seeing the whole conversation.
A judgment without a "[[rating]]" is recorded with score -1, as FastChat does, and its
`parse_error` says why; the table counts it and leaves it out of the mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clients.eval.client import ChatClient
from clients.eval.formats import fastchat
from clients.eval.formats.jsonio import append_jsonl, read_jsonl
from clients.eval.judging.common import JudgeRun, Match, unparsed_reason
from clients.eval.prompts import mt_bench_prompts
from clients.eval.questions import NEED_REF_CATS, Question, data_file, load_jsonl_by_id


def prompt_name(question: Question, turn: int) -> str:
    base = "single-math-v1" if question.category in NEED_REF_CATS else "single-v1"
    return base + ("-multi-turn" if turn == 2 else "")


def user_prompt(template: str, question: Question, answer: dict[str, Any], turn: int,
                reference: dict[str, Any] | None) -> str:
    turns = answer["choices"][0]["turns"]
    kwargs: dict[str, str] = {}
    if reference is not None:
        ref = reference["choices"][0]["turns"]
        kwargs = {"ref_answer_1": ref[0], "ref_answer_2": ref[1] if len(ref) > 1 else ""}
    if turn == 2:
        return template.format(question_1=question.turns[0], question_2=question.turns[1],
                               answer_1=turns[0], answer_2=turns[1], **kwargs)
    return template.format(question=question.turns[0], answer=turns[0], **kwargs)


class MtBenchJudge(JudgeRun):
    def setup(self) -> None:
        self.prompts = mt_bench_prompts()
        self.references = load_jsonl_by_id(data_file("mt_bench_reference_gpt4.jsonl"))
        self.out = self.layout.judgment_file("", self.args.judge.model)
        self.done = {(r["question_id"], r["model"], r["turn"]) for r in read_jsonl(self.out)}

    def matches(self, name: str, questions: list[Question]) -> list[Match]:
        answers = fastchat.validate_answers(self.layout.answer_file(name))
        found: list[Match] = []
        for q in questions:
            if q.question_id not in answers:
                self.missing += 1
                continue
            for turn in range(1, len(q.turns) + 1):
                if turn <= 2 and (q.question_id, name, turn) not in self.done:
                    found.append(Match(question=q, name=name, answer=answers[q.question_id], turn=turn))
        return found

    async def judge(self, client: ChatClient, match: Match) -> None:
        q, name = match.question, match.name
        prompt = self.prompts[prompt_name(q, match.turn)]
        reference = self.references.get(q.question_id) if q.category in NEED_REF_CATS else None
        text = user_prompt(prompt["prompt_template"], q, match.answer, match.turn, reference)
        messages = [{"role": "system", "content": prompt["system_prompt"]}, {"role": "user", "content": text}]
        reply = await client.complete(messages, max_tokens=self.args.max_tokens, temperature=0.0, verdict=self.verdict)
        score = fastchat.parse_rating(reply.text)
        error = unparsed_reason(reply, "[[rating]]") if score == fastchat.NO_RATING else None
        self.unparsed += error is not None
        append_jsonl(self.out, fastchat.judgment_record(
            question_id=q.question_id, model=name, judge=(self.args.judge.model, prompt["name"]),
            user_prompt=text, judgment=reply.text, score=score, turn=match.turn, parse_error=error))

    def outputs(self) -> list[Path]:
        return [self.out]
