"""Fair share at the app's front door: does a flooding client app starve a light one?

One run against the real app (gateway-only, real HTTP), one upstream stub that answers in
1 s with `max_concurrency: 8` (8 req/s of capacity), two API keys of equal weight:
1. the light key alone, one request at a time: its unloaded latency;
2. the heavy key keeps --flood pass-through requests in flight while the light key sends
   one at a time: the light key's latency under the flood;
3. the heavy key alone (the light key idle): its throughput against the upstream's capacity.
A clear 429 with Retry-After counts as refused, not lost; anything else that is not a 200 is lost.

    python -m benchmarks.fairness [--flood 200] [--light 30]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time

import aiohttp

import sys as _sys
from pathlib import Path as _Path

if __package__ in (None, ""):  # run as `python benchmarks/<name>.py`: the repo root must be importable
    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))

from benchmarks._load import BODY, Tally, closed_loop, one
from benchmarks._served import ServedApp, Stub, gateway_config

PORT = 18103
CAPACITY = 8  # max_concurrency over a 1 s upstream: requests per second
KEYS = {"heavy": "sk-bench-heavy", "light": "sk-bench-light"}


def config(queue_limit: int) -> dict:
    server = {"name": "up", "base_url": f"http://127.0.0.1:{PORT}/v1", "max_concurrency": CAPACITY,
              "queue_limit": queue_limit, "timeout_s": 60, "coalesce": False, "cache_max_entries": 0}
    keys = [{"name": name, "key_sha256": hashlib.sha256(key.encode()).hexdigest()} for name, key in KEYS.items()]
    return gateway_config(servers=[server], keys=keys)


def headers(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


async def light_requests(url: str, n: int) -> Tally:
    tally = Tally()
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        for _ in range(n):
            await one(session, url, {**BODY, "model": "server/s-up"}, headers("light"), tally)
        tally.elapsed_s = time.perf_counter() - t0
    return tally


async def under_flood(url: str, *, flood: int, light: int) -> Tally:
    """The light key's requests while the heavy key keeps `flood` in flight."""
    heavy_task = asyncio.create_task(closed_loop(
        url, body=lambda: {**BODY, "model": "server/s-up"}, headers=headers("heavy"), concurrency=flood,
        duration_s=10_000, warmup_s=0))
    await asyncio.sleep(8)  # the flood fills the queue first
    try:
        measured = await light_requests(url, light)
    finally:
        heavy_task.cancel()
        await asyncio.gather(heavy_task, return_exceptions=True)
    return measured


async def run(url: str, args: argparse.Namespace) -> None:
    unloaded = await light_requests(url, args.light)
    flooded = await under_flood(url, flood=args.flood, light=args.light)
    heavy = await closed_loop(url, body=lambda: {**BODY, "model": "server/s-up"}, headers=headers("heavy"),
                              concurrency=args.flood, duration_s=args.seconds, warmup_s=5)
    ratio = flooded.pct(0.95) / unloaded.pct(0.95)
    lost = unloaded.lost() + flooded.lost() + heavy.lost()
    print(f"\nlight key, one request at a time ({args.light} requests each)")
    print(f"  unloaded           p50 {unloaded.p50():.3f} s  p95 {unloaded.pct(0.95):.3f} s")
    print(f"  under a flood of {args.flood}  p50 {flooded.p50():.3f} s  p95 {flooded.pct(0.95):.3f} s")
    print(f"  p95 RATIO (flood / unloaded): {ratio:.2f}")
    print(f"heavy key alone, {args.flood} in flight: {heavy.rate():.2f} req/s of the upstream's {CAPACITY} "
          f"({heavy.rate() / CAPACITY:.0%}); 429s {heavy.statuses.get(429, 0)}")
    print(f"lost requests (neither 200 nor 429 with Retry-After): {lost}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=200, help="Requests the heavy key keeps in flight.")
    parser.add_argument("--light", type=int, default=30, help="Light-key requests per measurement.")
    parser.add_argument("--seconds", type=float, default=30.0, help="Heavy-alone measurement.")
    parser.add_argument("--queue-limit", type=int, default=256, help="The upstream server's fair-queue limit.")
    args = parser.parse_args()
    print(f"fairness benchmark, {time.strftime('%Y-%m-%d %H:%M')}: upstream 1 s x {CAPACITY}, flood {args.flood}")
    env = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}
    with Stub(PORT, latency_s=1.0), ServedApp(config(args.queue_limit), env=env) as app:
        asyncio.run(run(f"{app.url}/v1/chat/completions", args))


if __name__ == "__main__":
    main()
