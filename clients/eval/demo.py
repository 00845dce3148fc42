"""`colm-eval demo` (`make eval-demo`): the whole loop, offline, against a running app.

A handful of MT-Bench questions answered by `colm` with each collaboration strategy the
router lists (GET /v1/colm/strategies; just `colm` where the route is absent), by the
client model alone (`colm-client`) and by the reference server alone
(`server/<reference_server>`); judged by the embedded stand-in with its verdicts constrained;
then the table (quality, cost per answer, cost ratio to the server alone) and its plot.
Answers are short and requests run a few at a time, so it ends in minutes on a 2-core CPU
host. The stand-in judge's scores only show that the loop runs, as the table says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from clients.eval.config import Endpoint, GenerateArgs, JudgeArgs, RetryPolicy, Strict, TableArgs
from clients.eval.generate import GenerateReport, generate
from clients.eval.judging import JudgeReport, judge
from clients.eval.strategies import list_strategies

logger = logging.getLogger("clients.eval")


class DemoArgs(Strict):
    url: str = Field("http://127.0.0.1:8000", pattern=r"^https?://", description="The app: /v1 and /upstream/v1.")
    api_key: str = "EMPTY"
    out_dir: Path = Path("eval_out/demo")
    questions: int = Field(4, ge=1, description="The first N MT-Bench questions (two turns each).")
    max_tokens: int = Field(64, ge=1, description="Answer budget per turn.")
    judge_model: str = "smollm2-local"
    judge_max_tokens: int = Field(96, ge=1)
    reference_server: str = Field("gpt-conv", description="The app's reference_server; server/<it> is the "
                                  "server-alone baseline.")
    concurrency: int = Field(2, ge=1, description="Requests in flight per output (all outputs run at once).")
    timeout_s: float = Field(300.0, gt=0)

    @property
    def base_url(self) -> str:
        return f"{self.url.rstrip('/')}/v1"

    @property
    def judge_base_url(self) -> str:
        return f"{self.url.rstrip('/')}/upstream/v1"

    @property
    def baseline_name(self) -> str:
        return f"server__{self.reference_server}"

    def table(self) -> TableArgs:
        return TableArgs(out_dir=self.out_dir, benches=["mt-bench"], plot=self.out_dir / "quality_vs_cost.png",
                         csv=self.out_dir / "table.csv", cost_baseline=self.baseline_name)


@dataclass
class DemoReport:
    strategies: list[str] | None  # None: the router lists none (no /v1/colm/strategies)
    generated: list[GenerateReport] = field(default_factory=list)
    judged: JudgeReport | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.generated) + (self.judged.failed if self.judged else 0)


def outputs(args: DemoArgs, strategies: list[str] | None) -> list[GenerateArgs]:
    """One generation per strategy of `colm` (or plain `colm`), then both baselines."""
    retry = RetryPolicy(max_attempts=3)

    def run(model: str, strategy: str | None = None) -> GenerateArgs:
        endpoint = Endpoint(base_url=args.base_url, model=model, api_key=args.api_key, timeout_s=args.timeout_s,
                            retry=retry)
        return GenerateArgs(bench="mt-bench", endpoint=endpoint, strategy=strategy, out_dir=args.out_dir,
                            limit=args.questions, concurrency=args.concurrency, max_tokens=args.max_tokens)

    colm = [run("colm", s) for s in strategies] if strategies else [run("colm")]
    return [*colm, run("colm-client"), run(f"server/{args.reference_server}")]


async def demo(args: DemoArgs) -> DemoReport:
    started = time.perf_counter()
    offered = await list_strategies(Endpoint(base_url=args.base_url, model="colm", api_key=args.api_key))
    report = DemoReport(strategies=offered.names() if offered else None)
    if offered is None:
        logger.info("%s has no /colm/strategies: evaluating plain `colm`", args.base_url)
    runs = outputs(args, report.strategies)
    report.generated = list(await asyncio.gather(*(generate(r) for r in runs)))
    report.seconds["generate"] = time.perf_counter() - started

    judge_endpoint = Endpoint(base_url=args.judge_base_url, model=args.judge_model, api_key=args.api_key,
                              timeout_s=args.timeout_s, retry=RetryPolicy(max_attempts=3))
    report.judged = await judge(JudgeArgs(bench="mt-bench", judge=judge_endpoint, out_dir=args.out_dir,
                                          models=[g.name for g in report.generated], limit=args.questions,
                                          concurrency=2 * args.concurrency, max_tokens=args.judge_max_tokens))
    report.seconds["judge"] = time.perf_counter() - started - report.seconds["generate"]
    return report

