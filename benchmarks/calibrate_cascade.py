"""Where to set cascade's threshold: the client model's confidence on questions like yours.

It asks a running app for `cascade` answers that never escalate (threshold -100), reads each
draft's mean token log-probability from the trace, and prints the distribution with the
threshold that escalates a chosen share of them. By default the questions are MT-Bench and
Arena-Hard first turns that benchmarks/cost.py does NOT use, so a threshold chosen here is
not fitted to the benchmark's own sample. Point --questions-file at your traffic instead.

    python -m benchmarks.calibrate_cascade [--questions 40] [--escalate 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
from pathlib import Path

import openai

import sys as _sys
from pathlib import Path as _Path

if __package__ in (None, ""):  # run as `python benchmarks/<name>.py`: the repo root must be importable
    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))

from benchmarks.cost import DATA, CLIENT_CONTEXT_CHARS, sample

SCORE = re.compile(r"mean token log-probability (-?\d+\.\d+)")


def held_out(n: int, *, benchmark_size: int) -> list[str]:
    used = set(sample(benchmark_size))
    mt = [json.loads(line)["turns"][0] for line in (DATA / "mt_bench_questions.jsonl").read_text().splitlines() if line.strip()]
    arena = [json.loads(line)["turns"][0]["content"] for line in (DATA / "arena_hard_questions.jsonl").read_text().splitlines()
             if line.strip()]
    pool = [q for q in mt + arena[1::7] if q not in used and len(q) <= CLIENT_CONTEXT_CHARS]
    step = max(1, len(pool) // n)
    return pool[::step][:n]


async def score(client: openai.AsyncOpenAI, question: str, max_tokens: int) -> float | None:
    resp = await client.chat.completions.create(
        model="colm", messages=[{"role": "user", "content": question}], max_tokens=max_tokens,
        extra_body={"colm": {"strategy": "cascade", "threshold": -100, "trace": True, "cache": False}})
    why = resp.model_extra["colm"]["decisions"][0]["why"]
    found = SCORE.search(why)
    return float(found.group(1)) if found else None


async def run(args: argparse.Namespace) -> list[float]:
    questions = Path(args.questions_file).read_text().splitlines() if args.questions_file else held_out(
        args.questions, benchmark_size=args.benchmark_size)
    client = openai.AsyncOpenAI(base_url=args.base_url, api_key="sk-calibrate", max_retries=0, timeout=600)
    gate = asyncio.Semaphore(args.concurrency)

    async def one(q: str) -> float | None:
        async with gate:
            return await score(client, q, args.max_tokens)

    return [s for s in await asyncio.gather(*(one(q) for q in questions if q.strip())) if s is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--questions-file", help="One question per line (your own traffic).")
    parser.add_argument("--benchmark-size", type=int, default=24, help="The cost benchmark's sample, kept out.")
    parser.add_argument("--escalate", type=float, default=0.5, help="The share of answers to escalate.")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=384)
    args = parser.parse_args()
    scores = sorted(asyncio.run(run(args)))
    quantiles = statistics.quantiles(scores, n=10)
    print(f"{len(scores)} drafts; mean token log-probability: min {scores[0]:.3f}, median {statistics.median(scores):.3f}, "
          f"max {scores[-1]:.3f}")
    print("deciles: " + ", ".join(f"{q:.3f}" for q in quantiles))
    threshold = scores[min(len(scores) - 1, int(args.escalate * len(scores)))]
    print(f"threshold {threshold:.3f} escalates {sum(s < threshold for s in scores) / len(scores):.0%} of these "
          f"(collaboration.cascade.threshold, or colm.threshold per request)")


if __name__ == "__main__":
    main()
