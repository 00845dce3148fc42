"""Fair share at the app's front door: does a flooding client app starve a light one?

One run against the real app (gateway-only, real HTTP), one upstream stub that answers in
1 s with `max_concurrency: 8` (8 req/s of capacity), two API keys of equal weight:
1. the light key alone, one request at a time: its unloaded latency;
2. the heavy key keeps --flood pass-through requests in flight while the light key sends
   one at a time: the light key's latency under the flood;
3. the heavy key alone (the light key idle): its throughput against the upstream's capacity.
After phases 2 and 3 the heavy key stops sending and waits for what it has in flight, so each
of its requests is counted: answered, refused with a clear 429 and Retry-After, or lost
(anything else). The app runs as `make serve` runs it (colm-serve run: HAProxy).

    python -m benchmarks.fairness [--flood 200] [--light 100]
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

from benchmarks._load import BODY, Tally, drained_loop, one
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


async def under_flood(url: str, *, flood: int, light: int) -> tuple[Tally, Tally]:
    """The light key's requests while the heavy key keeps `flood` in flight; then the flood
    stops sending and drains, so every heavy request is counted. (light, heavy)."""
    stop = asyncio.Event()
    heavy = asyncio.create_task(drained_loop(url, body=lambda: {**BODY, "model": "server/s-up"}, headers=headers("heavy"),
                                             concurrency=flood, until=stop))
    await asyncio.sleep(8)  # the flood fills the queue first
    try:
        measured = await light_requests(url, light)
    finally:
        stop.set()
    _, everything = await heavy
    return measured, everything


async def heavy_alone(url: str, *, flood: int, seconds: float, warmup_s: float = 5.0) -> tuple[Tally, Tally]:
    """The heavy key alone: its rate over `seconds` after a warm-up, then drained to the end."""
    stop = asyncio.Event()
    start = time.perf_counter() + warmup_s
    task = asyncio.create_task(drained_loop(url, body=lambda: {**BODY, "model": "server/s-up"}, headers=headers("heavy"),
                                            concurrency=flood, until=stop, window=(start, start + seconds)))
    await asyncio.sleep(warmup_s + seconds)
    stop.set()
    return await task


def print_heavy(label: str, tally: Tally) -> None:
    refused = tally.statuses.get(429, 0) - tally.refused_without_retry_after
    print(f"  {label:<22} sent {sum(tally.statuses.values()):>5}  answered {tally.ok:>5}  "
          f"429 with Retry-After {refused:>5}  lost {tally.lost():>3}")


async def run(url: str, args: argparse.Namespace) -> None:
    unloaded = await light_requests(url, args.light)
    flooded, flood_heavy = await under_flood(url, flood=args.flood, light=args.light)
    heavy_rate, heavy_all = await heavy_alone(url, flood=args.flood, seconds=args.seconds)
    ratio = flooded.pct(0.95) / unloaded.pct(0.95)
    lost = unloaded.lost() + flooded.lost() + flood_heavy.lost() + heavy_all.lost()
    print(f"\nlight key, one request at a time ({args.light} requests each)")
    print(f"  unloaded           p50 {unloaded.p50():.3f} s  p95 {unloaded.pct(0.95):.3f} s")
    print(f"  under a flood of {args.flood}  p50 {flooded.p50():.3f} s  p95 {flooded.pct(0.95):.3f} s")
    print(f"  p95 RATIO (flood / unloaded): {ratio:.2f}")
    print(f"heavy key alone, {args.flood} in flight: {heavy_rate.rate():.2f} req/s of the upstream's {CAPACITY} "
          f"({heavy_rate.rate() / CAPACITY:.0%}) over {args.seconds:.0f} s")
    print("heavy key, every request counted to its end (the flood drains after each phase)")
    print_heavy("during the light run", flood_heavy)
    print_heavy("alone", heavy_all)
    print(f"lost requests, both keys (neither 200 nor 429 with Retry-After): {lost}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=200, help="Requests the heavy key keeps in flight.")
    parser.add_argument("--light", type=int, default=100, help="Light-key requests per measurement (100 for a p95).")
    parser.add_argument("--seconds", type=float, default=30.0, help="Heavy-alone measurement.")
    parser.add_argument("--queue-limit", type=int, default=256, help="The upstream server's fair-queue limit.")
    args = parser.parse_args()
    print(f"fairness benchmark, {time.strftime('%Y-%m-%d %H:%M')}: upstream 1 s x {CAPACITY}, flood {args.flood}")
    with Stub(PORT, latency_s=1.0), ServedApp(config(args.queue_limit)) as app:
        asyncio.run(run(f"{app.url}/v1/chat/completions", args))


if __name__ == "__main__":
    main()
