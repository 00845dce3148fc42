"""Fit cascade's confidence signal and threshold on checkable problems, and write them to a config.

Against a running app (`make serve-quality`, or any app whose client model you want to fit), it
asks for the client model's drafts (`colm`, cascade, never escalating) on the calibration split of
the vendored GSM8K, HumanEval and MBPP problems (disjoint from the split benchmarks/quality.py
reports on), grades them with no judge, puts them through the app's draft check (--check; a draft
that fails it escalates whatever its score), and measures each signal's AUROC (right drafts
against wrong ones). The best signal gets the conformal risk-control threshold: accepting a draft when its
score is at least the threshold keeps the share of wrong answers let through at or below --alpha,
in expectation on new questions like these. With --write, they go into the config's
`collaboration.cascade` (`signal`, `threshold`, `check`); nothing else in the file changes.

    python benchmarks/calibrate_cascade.py [--alpha 0.1] [--write deploy/serve_config.quality.yaml]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path

import openai
import yaml

if __package__ in (None, ""):  # run as `python benchmarks/<name>.py`: the repo root must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _quality_report as report
from benchmarks.quality import CLIENT_ALONE, check_drafts, run_arms, sample
from colm_serve.collab.checks import CHECKS
from colm_serve.collab.checks.sandbox import Sandbox


def write_cascade(path: Path, *, signal: str, threshold: float, check: str | None = None) -> None:
    """Set `signal` and `threshold` (and `check`, when given) under the colm app's
    `collaboration.cascade`, keeping the rest of the file (comments included) as it is; the result
    must still parse to the same config."""
    lines = path.read_text().splitlines(keepends=True)
    start = _block(lines, "collaboration:", 0)
    cascade = _block(lines, "cascade:", start + 1, parent=start)
    indent = _indent(lines[cascade + 1]) if cascade + 1 < len(lines) and _indent(lines[cascade + 1]) > _indent(lines[cascade]) \
        else _indent(lines[cascade]) + 2
    body_end = cascade + 1
    while body_end < len(lines) and (not lines[body_end].strip() or _indent(lines[body_end]) >= indent):
        body_end += 1
    keys = "signal|threshold" + ("|check" if check is not None else "")
    body = [ln for ln in lines[cascade + 1:body_end] if not re.match(rf"\s*({keys}):", ln)]
    new = [f"{' ' * indent}signal: {signal}\n", f"{' ' * indent}threshold: {threshold:.4f}\n"]
    new += [f"{' ' * indent}check: {check}\n"] if check is not None else []
    text = "".join(lines[:cascade + 1] + new + body + lines[body_end:])
    _check(text, signal=signal, threshold=round(threshold, 4), check=check)
    path.write_text(text)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block(lines: list[str], key: str, start: int, *, parent: int | None = None) -> int:
    floor = _indent(lines[parent]) if parent is not None else -1
    for i in range(start, len(lines)):
        if parent is not None and lines[i].strip() and _indent(lines[i]) <= floor:
            break
        if lines[i].strip() == key:
            return i
    raise ValueError(f"no `{key}` block found" + (f" under line {parent + 1}" if parent is not None else ""))


def _check(text: str, *, signal: str, threshold: float, check: str | None) -> None:
    doc = yaml.safe_load(text)
    apps = doc.get("applications", [doc])
    colm = next(a for a in apps if a.get("import_path", "").endswith("build_app"))
    got = colm["args"]["collaboration"]["cascade"]
    if (got.get("signal"), got.get("threshold")) != (signal, threshold) or (check and got.get("check") != check):
        raise ValueError(f"the edit did not land where intended: collaboration.cascade is {got}")


async def drafts(args: argparse.Namespace) -> list:
    client = openai.AsyncOpenAI(base_url=args.base_url, api_key="sk-calibrate", max_retries=0, timeout=3600)
    problems = sample(gsm8k=args.gsm8k, code=args.code, seed=args.seed, side="calibration")
    answers = await run_arms(client, Sandbox(concurrency=2), [CLIENT_ALONE], problems, args)
    await check_drafts(answers, problems, args.check)
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--gsm8k", type=int, default=40)
    parser.add_argument("--code", type=int, default=40)
    parser.add_argument("--alpha", type=float, default=0.1, help="Bound on the share of wrong answers let through.")
    parser.add_argument("--check", choices=sorted(CHECKS), default="examples",
                        help="The draft check to fit with and write (collaboration.cascade.check).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--write", type=Path, help="A Serve config to write the signal and threshold into.")
    args = parser.parse_args()
    fit = report.fit_cascade(asyncio.run(drafts(args)), alpha=args.alpha, check=args.check)
    print(json.dumps(fit, indent=1))
    if args.write:
        write_cascade(args.write, signal=fit["signal"], threshold=fit["threshold"], check=args.check)
        print(f"wrote collaboration.cascade signal={fit['signal']} threshold={fit['threshold']:.4f} check={args.check} "
              f"to {args.write}")


if __name__ == "__main__":
    main()
