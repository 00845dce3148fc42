"""Server tokens per question: `colm` versus the aggregator server answering alone.

Runs the same MT-Bench first turns through both model ids in one go (interleaved, so both
see the same machine load) against a running router, with the response cache off so each
answer is paid for, and prints tokens per question and the ratio.

    python benchmarks/server_tokens.py [--base-url http://127.0.0.1:8000/v1] [--questions 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx
import openai

QUESTIONS = Path(__file__).resolve().parents[1] / "clients" / "eval" / "data" / "mt_bench_questions.jsonl"


def load_questions(n: int) -> list[str]:
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    by_category: dict[str, list[str]] = {}
    for row in rows:
        by_category.setdefault(row["category"], []).append(row["turns"][0])
    # Round-robin over categories so a small sample still spans math, coding, writing...
    picked, i = [], 0
    while len(picked) < n and any(i < len(v) for v in by_category.values()):
        picked += [v[i] for v in by_category.values() if i < len(v)]
        i += 1
    return picked[:n]


async def ask(client: openai.AsyncOpenAI, model: str, question: str, max_tokens: int) -> dict:
    t0 = time.perf_counter()
    resp = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens,
        extra_body={"colm": {"cache": False}},
    )
    usage = resp.model_extra["colm"]["usage"]
    return {"model": model, "server_tokens": usage["server_tokens"], "cost_usd": usage["cost_usd"],
            "client_tokens": usage["client_tokens"], "latency_s": time.perf_counter() - t0}


async def run(args: argparse.Namespace) -> None:
    models = {m["id"] for m in httpx.get(f"{args.base_url}/models", timeout=30).json()["data"]}
    baseline = args.baseline
    if baseline not in models:
        raise SystemExit(f"{baseline} is not served here; available: {sorted(models)}")
    client = openai.AsyncOpenAI(base_url=args.base_url, api_key=args.api_key, timeout=900, max_retries=0)
    questions = load_questions(args.questions)
    gate = asyncio.Semaphore(args.concurrency)

    async def one(model: str, q: str) -> dict:
        async with gate:
            return await ask(client, model, q, args.max_tokens)

    jobs = [one(model, q) for q in questions for model in ("colm", baseline)]
    results = await asyncio.gather(*jobs)
    print(f"{len(questions)} MT-Bench questions, max_tokens={args.max_tokens}, baseline={baseline}")
    print(f"{'model':<22}{'server tok/q':>14}{'cost $/q':>12}{'client tok/q':>14}{'p50 latency s':>15}")
    means = {}
    for model in ("colm", baseline):
        rows = [r for r in results if r["model"] == model]
        means[model] = {k: statistics.mean(r[k] for r in rows) for k in ("server_tokens", "cost_usd", "client_tokens")}
        p50 = statistics.median(r["latency_s"] for r in rows)
        m = means[model]
        print(f"{model:<22}{m['server_tokens']:>14.1f}{m['cost_usd']:>12.6f}{m['client_tokens']:>14.1f}{p50:>15.2f}")
    ratio = means["colm"]["server_tokens"] / max(means[baseline]["server_tokens"], 1e-9)
    cost_ratio = means["colm"]["cost_usd"] / max(means[baseline]["cost_usd"], 1e-12)
    print(f"ratio colm/{baseline}: server tokens {ratio:.2f}x, cost {cost_ratio:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--api-key", default="bench")
    p.add_argument("--baseline", default="server/gpt-conv", help="Model id answering alone (the aggregator's).")
    p.add_argument("--questions", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=4)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
