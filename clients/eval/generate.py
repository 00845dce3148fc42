"""`colm-eval generate`: answers for one benchmark from one model id, resumable."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from clients.eval.client import ChatClient, Reply
from clients.eval.config import Endpoint, GenerateArgs
from clients.eval.layout import Layout, safe_name
from clients.eval.questions import MT_BENCH_TEMPERATURE, Question, load_questions
from clients.eval.runner import run_bounded
from clients.eval.stores import STORES, AnswerStore
from clients.eval.strategies import check_strategy
from clients.eval.usage import AnswerUsage

logger = logging.getLogger("clients.eval")


@dataclass
class GenerateReport:
    name: str
    path: str
    skipped: int
    answered: int
    failed: int


def temperature_for(args: GenerateArgs, question: Question) -> float:
    """The user's temperature, else the benchmark's own (MT-Bench: per category, as FastChat)."""
    if args.temperature is not None:
        return args.temperature
    if args.bench == "mt-bench":
        return MT_BENCH_TEMPERATURE.get(question.category, 0.7)
    return 0.0


def with_strategy(endpoint: Endpoint, strategy: str | None) -> Endpoint:
    """The endpoint with {"colm": {"strategy": ...}} merged into every request body."""
    if strategy is None:
        return endpoint
    colm = dict(endpoint.extra_body.get("colm") or {})
    if colm.setdefault("strategy", strategy) != strategy:
        raise ValueError(f"--strategy {strategy} and --extra-body's colm.strategy {colm['strategy']} disagree")
    return endpoint.model_copy(update={"extra_body": {**endpoint.extra_body, "colm": colm}})


def output_name(args: GenerateArgs) -> str:
    """--name, else the model id made file-safe plus the strategy (colm-guide), so strategies
    answering the same questions never overwrite each other."""
    if args.name:
        return args.name
    base = safe_name(args.endpoint.model)
    return f"{base}-{safe_name(args.strategy)}" if args.strategy else base


async def answer(client: ChatClient, args: GenerateArgs, question: Question) -> list[Reply]:
    """All turns of one question as one conversation: each turn sees the previous answers."""
    messages: list[dict[str, str]] = [{"role": "system", "content": args.system_prompt}] if args.system_prompt else []
    replies: list[Reply] = []
    for turn in question.turns:
        messages.append({"role": "user", "content": turn})
        reply = await client.complete(messages, max_tokens=args.max_tokens, temperature=temperature_for(args, question))
        if not reply.text.strip():
            logger.warning("%s: empty answer to %s (finish_reason=%s)", args.endpoint.model,
                           question.question_id, reply.finish_reason)
        messages.append({"role": "assistant", "content": reply.text})
        replies.append(reply)
    return replies


async def generate(args: GenerateArgs) -> GenerateReport:
    layout = Layout(args.out_dir, args.bench)
    name = output_name(args)
    endpoint = with_strategy(args.endpoint, args.strategy)
    if args.strategy:
        await check_strategy(endpoint, args.strategy)
    store: AnswerStore = STORES[args.bench](layout, name)
    questions = load_questions(args.bench, args.questions, limit=args.limit)
    store.prepare(args.questions)
    done = store.answered()
    todo = [q for q in questions if q.question_id not in done]
    logger.info("%s %s: %d questions, %d already answered, %d to go -> %s",
                args.bench, name, len(questions), len(questions) - len(todo), len(todo), store.path)
    client = ChatClient(endpoint)

    async def job(question: Question) -> None:
        replies = await answer(client, args, question)
        usage = AnswerUsage.from_replies(replies, question_id=question.question_id, name=name,
                                         model=args.endpoint.model, base_url=args.endpoint.base_url,
                                         strategy=args.strategy)
        store.add(question, replies, usage)

    try:
        failures = await run_bounded(todo, job, concurrency=args.concurrency, desc=f"{args.bench} {name}",
                                     label=lambda q: f"question {str(q.question_id)[:40]}")
    finally:
        store.finish(questions)
        await client.close()
    return GenerateReport(name=name, path=str(store.path), skipped=len(questions) - len(todo),
                          answered=len(todo) - len(failures), failed=len(failures))
