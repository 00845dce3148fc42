"""One row per arm of a checkable-task run, the `answers.json` that benchmarks/quality.py writes:
accuracy per task and pooled with its 95% Wilson interval, server cost per answer and its ratio
to the server alone, PGR and the escalation rate. `colm-eval table --checkable` and the
benchmark's own report both print these rows, so their figures cannot drift apart.

Invariant of a run: every arm answers exactly the server alone's problems, once each, so the
arms' 0/1 lists line up problem by problem (what the paired statistics need).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from statistics import fmean

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clients.eval.checkable import metrics
from clients.eval.formats.jsonio import FormatError

SERVER, CLIENT = "server alone", "client alone"
Problem = tuple[str, str]  # (task, problem id)


class CheckableAnswer(BaseModel):
    """One graded answer. Only the fields read here are typed: the benchmark's others (the text,
    the selection, the latency) are ignored, so that its file can grow without breaking this reader."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    arm: str
    task: str
    pid: str
    correct: bool
    cost_usd: float = Field(ge=0, description="Server cost as billed.")
    escalated: bool | None = Field(None, description="A cascade's choice; None where the arm makes none.")
    confidence: dict[str, float] = Field(default_factory=dict, description="The client draft's signals.")
    check: str | None = Field(None, description="The draft check's outcome (passed, failed, none), where one ran.")
    error: str | None = None

    @property
    def right(self) -> bool:
        """An answer that failed counts as wrong, whatever its grade says."""
        return self.correct and not self.error

    @property
    def problem(self) -> Problem:
        return self.task, self.pid


def by_arm(answers: Iterable[CheckableAnswer]) -> dict[str, dict[Problem, CheckableAnswer]]:
    table: dict[str, dict[Problem, CheckableAnswer]] = defaultdict(dict)
    for a in answers:
        table[a.arm][a.problem] = a
    return table


class QualityRun(BaseModel):
    """The answers and arms of a run; the calibration, fit and timing beside them are the
    benchmark's own (ignored here)."""

    model_config = ConfigDict(extra="ignore")

    answers: list[CheckableAnswer] = Field(min_length=1)
    arms: list[str] = Field(min_length=1, description="Row order; the server and the client alone among them.")
    setup: str = Field("", description="When, which commit, which endpoint, which knobs.")

    @model_validator(mode="after")
    def _paired(self) -> QualityRun:
        if missing := [a for a in (SERVER, CLIENT) if a not in self.arms]:
            raise ValueError(f"arms lack {missing}: the cost ratio and PGR need both the server and the client alone")
        if twice := [k for k, n in Counter((a.arm, a.problem) for a in self.answers).items() if n > 1]:
            raise ValueError(f"answered twice: {twice[:3]}")
        table = by_arm(self.answers)
        if stray := sorted(set(table) - set(self.arms)):
            raise ValueError(f"answers of arms not listed in arms: {stray}")
        for arm in self.arms:
            if set(table.get(arm, {})) != set(table[SERVER]):
                raise ValueError(f"arm {arm!r} answers {len(table.get(arm, {}))} problems, not the server "
                                 f"alone's {len(table[SERVER])}: the arms must answer the same problems")
        return self

    @property
    def problems(self) -> list[Problem]:
        return sorted(a.problem for a in self.answers if a.arm == SERVER)


def read_run(path: Path) -> QualityRun:
    """The run in `path`, or an error that names the file and says what is wrong with it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected the answers.json benchmarks/quality.py writes)")
    try:
        return QualityRun.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(path, "not JSON", str(exc)) from exc
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'top level'}: {e['msg']}" for e in exc.errors()[:3])
        raise FormatError(path, "not an answers.json of benchmarks/quality.py", where) from exc


class Score(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    correct: int = Field(ge=0)
    n: int = Field(gt=0)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n


class ArmRow(BaseModel):
    """One arm over the run's problems. None where the figure is undefined: no server cost to
    divide by, no accuracy gap between the server and the client alone, no escalation step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arm: str
    pooled: Score
    by_task: dict[str, Score]
    ci95: tuple[float, float] = Field(description="Wilson interval of the pooled accuracy.")
    cost_per_answer: float
    ratio: float | None = Field(description="Cost per answer over the server alone's.")
    pgr: float | None = Field(description="(arm - client alone) / (server alone - client alone), pooled accuracy.")
    pgr90: tuple[float, float] | None = Field(description="Paired-bootstrap 90% interval of the PGR.")
    escalation: float | None = Field(description="Share of a cascade's answers sent on.")
    errors: int = Field(description="Answers that failed; counted wrong.")

    @property
    def accuracy(self) -> float:
        return self.pooled.accuracy


def summarise(run: QualityRun, *, seed: int = 0) -> list[ArmRow]:
    """One row per arm, in the run's order."""
    table, problems = by_arm(run.answers), run.problems
    right = {arm: [int(table[arm][p].right) for p in problems] for arm in run.arms}
    server_cost = fmean(a.cost_usd for a in table[SERVER].values())
    return [_row(arm, [table[arm][p] for p in problems], right=right, server_cost=server_cost, seed=seed)
            for arm in run.arms]


def _row(arm: str, answers: list[CheckableAnswer], *, right: dict[str, list[int]], server_cost: float,
         seed: int) -> ArmRow:
    mine, client, server = right[arm], right[CLIENT], right[SERVER]
    gap = sum(server) != sum(client)
    cost = fmean(a.cost_usd for a in answers)
    # The client alone runs as a cascade that never escalates: only the real cascades have a rate.
    escalated = [a.escalated for a in answers if a.escalated is not None] if "cascade" in arm else []
    return ArmRow(
        arm=arm, pooled=Score(correct=sum(mine), n=len(mine)), by_task=_by_task(answers),
        ci95=metrics.wilson(sum(mine), len(mine)), cost_per_answer=cost,
        ratio=cost / server_cost if server_cost else None,
        pgr=metrics.pgr(fmean(mine), fmean(client), fmean(server)) if gap else None,
        pgr90=_interval(mine, client, server, seed=seed) if gap else None,
        escalation=fmean(escalated) if escalated else None,
        errors=sum(1 for a in answers if a.error),
    )


def _by_task(answers: list[CheckableAnswer]) -> dict[str, Score]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for a in answers:
        groups[a.task].append(a.right)
    return {t: Score(correct=sum(v), n=len(v)) for t, v in sorted(groups.items())}


def _interval(arm: list[int], client: list[int], server: list[int], *, seed: int) -> tuple[float, float] | None:
    try:
        return metrics.paired_bootstrap_pgr(arm, client, server, seed=seed)
    except ValueError:  # server and client tie in too many resamples: no interval to give
        return None
