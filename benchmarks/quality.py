"""Quality against cost on checkable tasks: is a cheaper answer still a right one?

One interleaved run against the quality set-up (`make serve-quality`: Qwen2.5-Coder-1.5B as the
server, the 0.5B as the client model) over a fixed, seeded sample of GSM8K, HumanEval and MBPP
problems, graded with no judge: GSM8K by its final number, the code tasks by their unit tests in
a sandbox. Decoding is greedy; the response cache is off, so every arm is billed as if it ran alone.

1. Calibration split: the client model's drafts (`colm`, cascade, never escalating) are graded
   and put through the app's draft check (--check examples: the draft's code run against the
   examples its question shows; a draft that fails scores below any threshold), and each
   confidence signal's AUROC is measured; the best signal gets a conformal threshold that
   bounds the share of wrong answers let through at --alpha.
2. Test split, every arm side by side: the server alone (`server/<specialist>`, the specialist
   a perfect router picks: qwen-math for GSM8K, qwen-coder for code), the client alone (the
   cascade's drafts, which are the same calls), every strategy, and cascade with every
   escalation target at the calibrated signal and threshold. A cascade shares the calls it has
   in common with another arm, billed as if it ran alone: a standing draft is the client
   alone's answer, an escalation to the server is the server alone's answer where the selector
   picked the specialist the server alone asked (the same request to the same server), and an
   escalation to shepherd or guide, which attaches no draft (`draft_tokens` 0), is that
   strategy's own answer (the same calls, tested in tests/collab/test_cascade.py).

Per arm: accuracy with its 95% Wilson interval, server cost per answer as billed, the ratio to
the server alone, PGR with a paired-bootstrap 90% interval, and the escalation rate; then
McNemar (server vs client), CPT(50%)/CPT(80%), each signal's AUROC on the test split, and a PNG.

    python benchmarks/quality.py [--gsm8k 40] [--code 40] [--out docs/quality]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import openai

if __package__ in (None, ""):  # run as `python benchmarks/<name>.py`: the repo root must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _quality_report as report
from clients.eval.checkable import tasks
from clients.eval.checkable.arms import CLIENT, SERVER
from clients.eval.checkable.graders import grade
from colm_serve.collab.checks import CHECKS
from colm_serve.collab.checks.sandbox import Sandbox
from colm_serve.config import CascadeConfig

NEVER = -100.0  # a threshold no draft scores below: the cascade keeps every draft
SPECIALIST = {"gsm8k": "qwen-math", "humaneval": "qwen-coder", "mbpp": "qwen-coder"}


@dataclass
class Answer:
    arm: str
    task: str
    pid: str
    text: str = ""
    correct: bool = False
    cost_usd: float = 0.0
    server_tokens: int = 0
    escalated: bool | None = None
    confidence: dict = field(default_factory=dict)
    check: str | None = None
    selected: list = field(default_factory=list)
    latency_s: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class Arm:
    name: str
    model: str
    colm: dict | None = None


def sample(*, gsm8k: int, code: int, seed: int, side: str) -> list[tasks.Problem]:
    """The first problems of each task on one side of the fixed split, code half HumanEval and half MBPP."""
    want = {"gsm8k": gsm8k, "humaneval": code // 2, "mbpp": code - code // 2}
    picked = []
    for task, n in want.items():
        halves = tasks.split(tasks.load(task), seed=seed, calibration_share=0.5)
        pool = halves.calibration if side == "calibration" else halves.test
        if len(pool) < n:
            raise SystemExit(f"{task}: {len(pool)} problems on the {side} side, {n} asked")
        picked += pool[:n]
    return picked


# The drafts as the client model writes them: no check runs in the app (the benchmark runs it here).
CLIENT_ALONE = Arm(CLIENT, "colm", {"strategy": "cascade", "threshold": NEVER, "check": "none"})


def test_arms(signal: str, threshold: float, check: str = "none") -> list[Arm]:
    # draft_tokens 0: an escalation to shepherd or guide starts afresh, as the strategy alone would; shown
    # the unsure draft, the server anchored on it (docs/quality.md)
    cascade = {"strategy": "cascade", "signal": signal, "threshold": threshold, "check": check, "draft_tokens": 0}
    return [
        Arm(SERVER, "server"),
        CLIENT_ALONE,
        Arm("guide", "colm", {"strategy": "guide"}),
        Arm("shepherd", "colm", {"strategy": "shepherd"}),
        Arm("cascade->server", "colm", {**cascade, "escalate_to": "server"}),
        Arm("cascade->shepherd", "colm", {**cascade, "escalate_to": "shepherd"}),
        Arm("cascade->guide", "colm", {**cascade, "escalate_to": "guide"}),
    ]


async def ask(client: openai.AsyncOpenAI, sandbox: Sandbox, arm: Arm, problem: tasks.Problem, max_tokens: int) -> Answer:
    out, t0 = Answer(arm.name, problem.task, problem.id), time.perf_counter()
    model = f"server/{SPECIALIST[problem.task]}" if arm.model == "server" else arm.model
    body = {"colm": {**arm.colm, "trace": True, "cache": False}} if arm.colm else {"colm": {"cache": False}}
    try:
        resp = await client.chat.completions.create(model=model, messages=problem.messages, max_tokens=max_tokens,
                                                    temperature=0.0, extra_body=body)
    except openai.APIError as exc:
        out.error = f"{type(exc).__name__}: {exc}"[:300]
        return out
    colm = resp.model_extra.get("colm") or {}
    out.text = resp.choices[0].message.content or ""
    out.cost_usd, out.server_tokens = colm["usage"]["cost_usd"], colm["usage"]["server_tokens"]
    out.confidence, out.selected = colm.get("confidence", {}), colm.get("selected", [])
    escalations = [d["choice"] != "no" for d in colm.get("decisions", []) if d["step"] == "escalate"]
    out.escalated = escalations[0] if escalations else None
    out.latency_s = time.perf_counter() - t0
    out.correct = (await grade(problem, out.text, sandbox=sandbox)).correct
    return out


async def run_arms(client, sandbox, arms: list[Arm], problems: list[tasks.Problem], args) -> list[Answer]:
    """Every (arm, problem) pair at once, behind one gate: the server's and the client model's
    engines both stay busy, and no arm gets an emptier host than another."""
    gate = asyncio.Semaphore(args.concurrency)
    done = 0

    async def one(arm: Arm, problem: tasks.Problem) -> Answer:
        nonlocal done
        async with gate:
            answer = await ask(client, sandbox, arm, problem, args.max_tokens)
        done += 1
        if done % 20 == 0:
            print(f"  {done}/{len(arms) * len(problems)} answers", flush=True)
        return answer

    pairs = [(arm, p) for p in problems for arm in arms]  # interleaved: problem by problem
    return list(await asyncio.gather(*(one(arm, p) for arm, p in pairs)))


async def check_drafts(drafts: list[Answer], problems: list[tasks.Problem], check: str) -> None:
    """Run the app's own draft check (colm_serve/collab/checks) on the client alone's drafts, here, so
    that the calibration and the shared drafts decide as the app would (with its default time limit);
    each draft keeps the outcome."""
    checker = CHECKS[check](timeout_s=CascadeConfig.model_fields["check_timeout_s"].default)
    questions = {(p.task, p.id): p.question for p in problems}

    async def one(d: Answer) -> None:
        d.check = (await checker.run(questions[(d.task, d.pid)], d.text)).outcome

    await asyncio.gather(*(one(d) for d in drafts if not d.error))


def shared_drafts(arm: Arm, drafts: list[Answer], fit: dict) -> tuple[list[Answer], set[tuple[str, str]]]:
    """A cascade's answers where its draft stands: the client alone's, since the draft is the same
    greedy call and costs no server token; and the problems whose draft falls below the threshold
    (a draft that failed the check among them)."""
    kept, unsure = [], set()
    for d in drafts:
        score = report.decision_score(d, fit["signal"])
        if d.error or score is None or score < fit["threshold"]:
            unsure.add((d.task, d.pid))
        else:
            kept.append(replace(d, arm=arm.name, escalated=False))
    return kept, unsure


def shared_handovers(arm: Arm, unsure: set[tuple[str, str]], answers: list[Answer]) -> list[Answer]:
    """A cascade's escalations that are another arm's calls, with that arm's answer and bill.
    To the server: the app hands the request as sent to its selected specialist (`server/<name>`
    with the same body), so where the selector picks the specialist the server alone asked
    (shepherd's selection of the same question, by the same selector, shows which), they are the
    server alone's. To shepherd or guide with no draft attached: that strategy's, whose calls the
    escalation repeats (the cascade's own draft bills no server token)."""
    target, by = arm.colm.get("escalate_to"), {(a.arm, a.task, a.pid): a for a in answers}
    shared = []
    for task, pid in sorted(unsure):
        if target == "server":
            same, shepherd = by.get((SERVER, task, pid)), by.get(("shepherd", task, pid))
            if not (shepherd and shepherd.selected[:1] == [SPECIALIST[task]]):
                continue
            same = same and replace(same, selected=shepherd.selected[:1])
        elif arm.colm.get("draft_tokens") == 0:
            same = by.get((target, task, pid))
        else:
            continue
        if same and not same.error:
            shared.append(replace(same, arm=arm.name, escalated=True))
    return shared


def shared_cascade(arm: Arm, answers: list[Answer], fit: dict) -> tuple[list[Answer], list[Answer], set[tuple[str, str]]]:
    """What a cascade arm shares with the other arms' answers: its standing drafts, its escalations
    that are another arm's calls, and the unsure problems left to send through the app."""
    kept, unsure = shared_drafts(arm, [a for a in answers if a.arm == CLIENT_ALONE.name], fit)
    shared = shared_handovers(arm, unsure, answers)
    return kept, shared, unsure - {(a.task, a.pid) for a in shared}


async def cascade_arms(client, sandbox, arms: list[Arm], test, answers: list[Answer], fit: dict, args) -> list[Answer]:
    """Every cascade arm at once: its standing drafts and the escalations it shares with another arm
    from the answers so far, and the rest of its unsure problems through the app."""

    async def one(arm: Arm) -> list[Answer]:
        kept, shared, unsure = shared_cascade(arm, answers, fit)
        sent = await run_arms(client, sandbox, [arm], [p for p in test if (p.task, p.id) in unsure], args)
        differ = [a.pid for a in sent if a.escalated is False]
        if differ:  # the app re-drafted and scored above the threshold: the drafts were not the same
            print(f"  {arm.name}: {len(differ)} re-drafts stood where the shared draft did not: {differ}", flush=True)
        print(f"  {arm.name}: {len(kept)} drafts stood, {len(shared)} escalations shared with "
              f"{SERVER if arm.colm['escalate_to'] == 'server' else arm.colm['escalate_to']}, "
              f"{len(sent)} sent through the app", flush=True)
        return kept + shared + sent

    return [answer for answers in await asyncio.gather(*(one(arm) for arm in arms)) for answer in answers]


async def main_async(args: argparse.Namespace) -> dict:
    client = openai.AsyncOpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=3600)
    sandbox = Sandbox(concurrency=2)
    started = time.time()
    calib = sample(gsm8k=args.calibration_gsm8k, code=args.calibration_code, seed=args.seed, side="calibration")
    test = sample(gsm8k=args.gsm8k, code=args.code, seed=args.seed, side="test")
    arms = [a for a in test_arms("mean", NEVER) if a.name in args.arms]
    direct = [a for a in arms if not a.name.startswith("cascade")]
    print(f"calibration: {len(calib)} client drafts, beside the test split's {len(test)} problems x "
          f"{len(direct)} arms ({', '.join(a.name for a in direct)}), {args.concurrency} at a time", flush=True)
    drafts, answers = await asyncio.gather(run_arms(client, sandbox, [CLIENT_ALONE], calib, args),
                                           run_arms(client, sandbox, direct, test, args))
    await check_drafts(drafts + [a for a in answers if a.arm == CLIENT_ALONE.name], calib + test, args.check)
    fit = report.fit_cascade(drafts, alpha=args.alpha, check=args.check)
    print(f"calibrated: signal {fit['signal']} (AUROC {fit['auroc'][fit['signal']]:.3f} on calibration, check "
          f"{args.check}), threshold {fit['threshold']:.4f} for at most {args.alpha:.0%} wrong answers let through", flush=True)
    cascades = [a for a in test_arms(fit["signal"], fit["threshold"], args.check)
                if a.name.startswith("cascade") and a.name in args.arms]
    answers += await cascade_arms(client, sandbox, cascades, test, answers, fit, args)
    return {"calibration": [asdict(a) for a in drafts], "answers": [asdict(a) for a in answers], "fit": fit,
            "arms": [a.name for a in direct + cascades], "wall_s": round(time.time() - started)}


def setup_line(args: argparse.Namespace) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return (f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, commit {commit}, {args.base_url}, "
            f"seed {args.seed}, greedy, max_tokens {args.max_tokens}, concurrency {args.concurrency}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="sk-quality")
    parser.add_argument("--gsm8k", type=int, default=40, help="GSM8K problems on the test split.")
    parser.add_argument("--code", type=int, default=40, help="Code problems on the test split (half HumanEval, half MBPP).")
    parser.add_argument("--calibration-gsm8k", type=int, default=40)
    parser.add_argument("--calibration-code", type=int, default=40)
    parser.add_argument("--alpha", type=float, default=0.35,
                        help="Bound on the share of answers that are wrong drafts let through (the client alone lets "
                             "through every wrong one); lower escalates more, and costs more.")
    parser.add_argument("--check", choices=sorted(CHECKS), default="examples",
                        help="The draft check the cascade arms run (collaboration.cascade.check): examples runs the "
                             "draft's code against the examples its question shows; none leaves the score alone.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("docs/quality"))
    parser.add_argument("--arms", nargs="+", default=[a.name for a in test_arms("mean", NEVER)],
                        help="A subset of the arms (the server and the client alone are always needed).")
    args = parser.parse_args()
    args.arms = sorted(set(args.arms) | {SERVER, CLIENT_ALONE.name})
    setup = setup_line(args)  # the commit measured, before any later commit moves HEAD
    print(report.write({**asyncio.run(main_async(args)), "setup": setup}, args.out))


if __name__ == "__main__":
    main()
