"""Upstream calls and server tokens with coalescing + cache on versus off.

Simulated client apps ask questions drawn with repeats (a few popular ones, a long tail)
through one ServerProxy in front of the local upstream sim, in bursts, so identical calls
arrive both at once (coalescing) and later (cache); a share of calls sample (temperature
0.7), so only coalescing can help those. The same workload runs twice in one
invocation: mechanisms on, then off; it prints upstream calls and server tokens for each
and the ratios. Run from the repository root (it reuses the test suite's sim):

    python -m benchmarks.coalescing [--clients 8] [--requests 40] [--distinct 30] [--sampled 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import sys as _sys
from pathlib import Path as _Path

if __package__ in (None, ""):  # run as `python benchmarks/<name>.py`: the repo root must be importable
    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))

from colm_serve.config import ServerConfig
from colm_serve.server_proxy.proxy import ServerProxy
from colm_serve.server_proxy.types import UpstreamCall
from tests.upstream_sim import UpstreamSim

QUESTIONS = Path(__file__).resolve().parents[1] / "clients" / "eval" / "data" / "mt_bench_questions.jsonl"
logger = logging.getLogger("benchmarks.coalescing")


@dataclass
class Outcome:
    label: str
    upstream_calls: int
    server_tokens: int
    coalesced: int
    cache_hits: int
    answered: int
    wall_s: float


def load_questions(n: int) -> list[str]:
    if QUESTIONS.is_file():
        rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
        return [row["turns"][0] for row in rows][:n]
    logger.warning("%s not found: using synthetic questions", QUESTIONS)
    return [f"Synthetic question number {i}: explain topic {i} briefly." for i in range(n)]


@dataclass(frozen=True)
class Ask:
    question: str
    temperature: float


def workload(questions: list[str], *, clients: int, requests: int, sampled: float, seed: int) -> list[list[Ask]]:
    """Per client, what it asks in order; popularity falls off like 1/rank (Zipf)."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(questions))]
    return [
        [Ask(q, 0.7 if rng.random() < sampled else 0.0) for q in rng.choices(questions, weights, k=requests)]
        for _ in range(clients)
    ]


async def run_client(proxy: ServerProxy, name: str, asks: list[Ask], *, burst: int) -> int:
    answered = 0
    for start in range(0, len(asks), burst):
        calls = [
            UpstreamCall(server="sim", model="sim-model", messages=[{"role": "user", "content": a.question}],
                         max_tokens=64, temperature=a.temperature, client=name,
                         price_in_per_m=1.0, price_out_per_m=2.0)
            for a in asks[start:start + burst]
        ]
        replies = await asyncio.gather(*(proxy.chat(c) for c in calls))
        answered += sum(1 for r in replies if r.text)
    return answered


async def measure(sim: UpstreamSim, plan: list[list[Ask]], *, on: bool, burst: int) -> Outcome:
    server = ServerConfig(name="sim", base_url=sim.url, max_concurrency=8, queue_limit=4096, coalesce=on,
                          cache_max_entries=2048 if on else 0)
    proxy = ServerProxy(server)
    started = time.monotonic()
    try:
        answered = await asyncio.gather(
            *(run_client(proxy, f"app-{i}", qs, burst=burst) for i, qs in enumerate(plan))
        )
    finally:
        await proxy.aclose()
    stats = proxy.stats()
    return Outcome("on" if on else "off", stats["upstream_calls"], stats["server_tokens"], stats["coalesced"],
                   stats["cache_hits"], sum(answered), time.monotonic() - started)


def report(on: Outcome, off: Outcome) -> None:
    print(f"{'mode':<6}{'answered':>10}{'upstream calls':>16}{'server tokens':>15}{'coalesced':>11}"
          f"{'cache hits':>12}{'wall s':>8}")
    for o in (on, off):
        print(f"{o.label:<6}{o.answered:>10}{o.upstream_calls:>16}{o.server_tokens:>15}{o.coalesced:>11}"
              f"{o.cache_hits:>12}{o.wall_s:>8.1f}")
    print(f"upstream calls on/off: {on.upstream_calls / off.upstream_calls:.2f}")
    print(f"server tokens  on/off: {on.server_tokens / off.server_tokens:.2f}")


async def main_async(args: argparse.Namespace) -> None:
    plan = workload(load_questions(args.distinct), clients=args.clients, requests=args.requests,
                    sampled=args.sampled, seed=args.seed)
    with UpstreamSim(latency_s=args.latency, jitter_s=args.latency / 2, seed=args.seed) as sim:
        on = await measure(sim, plan, on=True, burst=args.burst)
        sim.reset()
        off = await measure(sim, plan, on=False, burst=args.burst)
    if on.answered != off.answered:
        raise SystemExit(f"the two runs answered differently: {on.answered} vs {off.answered}")
    report(on, off)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="simulated client apps")
    parser.add_argument("--requests", type=int, default=40, help="questions per client")
    parser.add_argument("--distinct", type=int, default=30, help="distinct questions in the pool")
    parser.add_argument("--sampled", type=float, default=0.25, help="share of calls at temperature 0.7")
    parser.add_argument("--burst", type=int, default=4, help="questions a client sends at once")
    parser.add_argument("--latency", type=float, default=0.05, help="sim upstream latency in seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
