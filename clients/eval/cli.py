"""`colm-eval generate | judge | table`: parse once into typed args, run, report.

Exit status: 0 when everything asked for was done, 1 when some questions or judgments
failed (rerun to retry just those), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from clients.eval import checkable_table
from clients.eval.checkable.arms import read_run
from clients.eval.config import (
    BENCHES,
    Endpoint,
    GenerateArgs,
    JudgeArgs,
    RetryPolicy,
    TableArgs,
)
from clients.eval.demo import DemoArgs, demo
from clients.eval.formats.jsonio import FormatError
from clients.eval.generate import generate
from clients.eval.judging import judge
from clients.eval.results import Row
from clients.eval.table import collect, plot, render, write_csv

logger = logging.getLogger("clients.eval")


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bench", required=True, choices=BENCHES)
    p.add_argument("--out-dir", type=Path, default=Path("eval_out"))
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    p.add_argument("--questions", type=Path, help="question file (required for alpaca-eval generation)")
    p.add_argument("--timeout", type=float, default=600.0, help="per-request timeout in seconds")
    p.add_argument("--max-attempts", type=int, default=5, help="attempts per request on transient errors")
    p.add_argument("--retry-base", type=float, default=1.0, help="first retry wait in seconds (doubles)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colm-eval", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="answer a benchmark's questions with one model id")
    _common(gen)
    gen.add_argument("--base-url", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    gen.add_argument("--model", required=True, help="model id: colm, colm-client, server/<name>, ...")
    gen.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "EMPTY"))
    gen.add_argument("--name", help="output name (default: the model id made file-safe, plus -STRATEGY)")
    gen.add_argument("--strategy", help='CoLM collaboration strategy (GET /v1/colm/strategies), sent as '
                     '{"colm": {"strategy": NAME}}; the output name becomes e.g. colm-guide')
    gen.add_argument("--max-tokens", type=int, default=1024)
    gen.add_argument("--temperature", type=float, help="default: the benchmark's own")
    gen.add_argument("--system-prompt")
    gen.add_argument("--extra-body", type=_json_object, default={}, help='JSON merged into each request, e.g. \'{"colm": {"top_k": 1}}\'')

    jud = sub.add_parser("judge", help="judge the answers with an OpenAI-compatible judge")
    _common(jud)
    jud.add_argument("--judge-base-url", required=True)
    jud.add_argument("--judge-model", required=True)
    jud.add_argument("--judge-api-key", default=os.environ.get("OPENAI_API_KEY", "EMPTY"))
    jud.add_argument("--judge-max-tokens", type=int, default=2048,
                     help="judge output budget; clamped to the judge's context, with a message")
    jud.add_argument("--judge-structured", choices=["auto", "on", "off"], default="auto",
                     help="constrain verdicts with vLLM structured outputs (auto: when /v1/models shows a vLLM-like "
                          "server: owned_by vllm/local or a max_model_len)")
    jud.add_argument("--judge-prompt", type=Path, help="JSON {system_prompt, prompt_template} (arena-hard, alpaca-eval)")
    jud.add_argument("--model", dest="models", action="append", default=[], help="output name to judge (repeatable; default all)")
    jud.add_argument("--baseline", help="arena-hard: baseline answer file or name; alpaca-eval: reference outputs")

    tab = sub.add_parser("table", help="print quality beside cost for every model id")
    tab.add_argument("--out-dir", type=Path, default=Path("eval_out"))
    tab.add_argument("--bench", dest="benches", action="append", choices=BENCHES, help="repeatable; default all")
    tab.add_argument("--plot", type=Path, help="write a quality-vs-cost PNG of the judged outputs here")
    tab.add_argument("--csv", type=Path, help="write the table as CSV here (the --checkable rows go beside it, "
                     "to <stem>-checkable.csv)")
    tab.add_argument("--checkable", type=Path, help="an answers.json written by benchmarks/quality.py: also print "
                     "accuracy on GSM8K, HumanEval and MBPP beside cost, one row per arm")
    tab.add_argument("--cost-baseline", help="output name of the server alone for the cost ratio "
                     "(default: the one server__* output)")

    dem = sub.add_parser("demo", help="the whole loop offline against a running app (make eval-demo)")
    for flag, kind, text in (
        ("--url", str, "the app: router at /v1, stand-in at /upstream/v1"), ("--out-dir", Path, "output folder"),
        ("--questions", int, "the first N MT-Bench questions"), ("--max-tokens", int, "answer budget per turn"),
        ("--judge-model", str, "the stand-in's model id"), ("--judge-max-tokens", int, "judge budget"),
        ("--reference-server", str, "server/<reference-server> is the server-alone baseline"),
        ("--concurrency", int, "requests in flight per output"), ("--api-key", str, "bearer key"),
    ):
        default = DemoArgs.model_fields[flag[2:].replace("-", "_")].default
        dem.add_argument(flag, type=kind, help=f"{text} (default: {default})")
    return parser


def _endpoint(ns: argparse.Namespace, *, base_url: str, model: str, api_key: str, extra: dict[str, Any]) -> Endpoint:
    retry = RetryPolicy(max_attempts=ns.max_attempts, backoff_base_s=ns.retry_base)
    return Endpoint(base_url=base_url, model=model, api_key=api_key, timeout_s=ns.timeout, extra_body=extra, retry=retry)


def run_generate(ns: argparse.Namespace) -> int:
    args = GenerateArgs(
        bench=ns.bench, out_dir=ns.out_dir, questions=ns.questions, limit=ns.limit, concurrency=ns.concurrency,
        endpoint=_endpoint(ns, base_url=ns.base_url, model=ns.model, api_key=ns.api_key, extra=ns.extra_body),
        name=ns.name, strategy=ns.strategy, max_tokens=ns.max_tokens, temperature=ns.temperature,
        system_prompt=ns.system_prompt,
    )
    report = asyncio.run(generate(args))
    print(f"{args.bench} {report.name}: {report.answered} answered, {report.skipped} already there, "
          f"{report.failed} failed -> {report.path}")
    return 1 if report.failed else 0


def run_judge(ns: argparse.Namespace) -> int:
    args = JudgeArgs(
        bench=ns.bench, out_dir=ns.out_dir, questions=ns.questions, limit=ns.limit, concurrency=ns.concurrency,
        judge=_endpoint(ns, base_url=ns.judge_base_url, model=ns.judge_model, api_key=ns.judge_api_key, extra={}),
        models=ns.models, baseline=ns.baseline, max_tokens=ns.judge_max_tokens, judge_prompt=ns.judge_prompt,
        structured=ns.judge_structured,
    )
    report = asyncio.run(judge(args))
    how = "verdicts constrained (structured outputs)" if report.structured else "unconstrained"
    print(f"{report.bench} judged by {report.judge} ({how}): {report.judged} new judgments, "
          f"{report.unparsed} without a readable verdict, {report.failed} failed, {report.clamped} with the output "
          f"budget clamped to the judge's context, {report.missing} (model, question) pairs without answers "
          f"-> {', '.join(report.outputs)}")
    return 1 if report.failed else 0


def show_table(args: TableArgs) -> int:
    run = read_run(args.checkable) if args.checkable else None  # a bad file stops us before any output
    table_rows = collect(args)
    if not table_rows and run is None:
        print(f"no answers under {args.out_dir}", file=sys.stderr)
        return 1
    console = Console(width=200)
    if table_rows:
        _show_judged(table_rows, args, console)
    elif args.plot:
        print(f"no judged answers under {args.out_dir}: no plot written", file=sys.stderr)
    if run is not None:
        checkable_table.show(run, source=args.checkable, csv=args.csv, console=console)
    return 0


def _show_judged(table_rows: list[Row], args: TableArgs, console: Console) -> None:
    render(table_rows, console)
    if args.csv:
        write_csv(table_rows, args.csv)
        print(f"table written to {args.csv}")
    if args.plot:
        print(f"plot of {plot(table_rows, args.plot)} judged model ids written to {args.plot}")


def run_table(ns: argparse.Namespace) -> int:
    return show_table(TableArgs(out_dir=ns.out_dir, benches=ns.benches or list(BENCHES), plot=ns.plot, csv=ns.csv,
                                cost_baseline=ns.cost_baseline, checkable=ns.checkable))


def run_demo(ns: argparse.Namespace) -> int:
    given = {k: v for k, v in vars(ns).items() if k in DemoArgs.model_fields and v is not None}
    args = DemoArgs.model_validate({"api_key": os.environ.get("OPENAI_API_KEY", "EMPTY"), **given})
    report = asyncio.run(demo(args))
    print("strategies: " + (", ".join(report.strategies) if report.strategies is not None
                            else "none listed (no /v1/colm/strategies): plain colm"))
    for g in report.generated:
        print(f"  {g.name}: {g.answered} answered, {g.skipped} already there, {g.failed} failed")
    if report.judged is not None:
        j = report.judged
        print(f"judged by {j.judge}: {j.judged} judgments, {j.unparsed} without a readable verdict, {j.failed} failed")
    print(f"generate {report.seconds['generate']:.0f} s, judge {report.seconds.get('judge', 0):.0f} s")
    status = show_table(args.table())
    return 1 if report.failed or status else 0


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "openai"):  # one line per request drowns the progress bar
        logging.getLogger(noisy).setLevel(logging.WARNING)
    command = {"generate": run_generate, "judge": run_judge, "table": run_table, "demo": run_demo}[ns.command]
    try:
        return command(ns)
    except (ValidationError, ValueError, FileNotFoundError, FormatError) as exc:
        print(f"colm-eval {ns.command}: {exc}", file=sys.stderr)
        return 2
