"""Judges for each benchmark, on any OpenAI-compatible judge endpoint."""

from __future__ import annotations

from clients.eval.config import JudgeArgs
from clients.eval.judging.alpaca_eval import AlpacaEvalJudge
from clients.eval.judging.arena_hard import ArenaHardJudge
from clients.eval.judging.common import JudgeReport, JudgeRun
from clients.eval.judging.mt_bench import MtBenchJudge

JUDGES: dict[str, type[JudgeRun]] = {
    "mt-bench": MtBenchJudge, "arena-hard": ArenaHardJudge, "alpaca-eval": AlpacaEvalJudge,
}


async def judge(args: JudgeArgs) -> JudgeReport:
    return await JUDGES[args.bench](args).run()
