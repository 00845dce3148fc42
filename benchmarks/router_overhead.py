"""What the router costs a request: added latency at one client, throughput at many.

In one run, side by side, it sends the same pass-through chat requests straight to a stub
upstream ("direct") and through the app (`server/<name>`: the router, the ServerProxy and
its fair queue, admission and accounting, real HTTP to the same stub):
1. added latency: one client, a zero-latency stub, direct and router requests alternating;
2. throughput: 64, 256 and 512 clients on a stub that waits 1 s, each level direct then
   router, with the ratio router/direct;
3. the Serve floor: part 1 again on an app of the router's shape with none of our code in it
   (benchmarks/serve_floor.py), so the added latency splits into Serve's share and ours.
The app is gateway-only (no client model) so the figures are the router's own. It runs as a
production deployment would: Serve's throughput-optimized mode with HAProxy in front of the
router's own HTTP server (RAY_SERVE_THROUGHPUT_OPTIMIZED=1 RAY_SERVE_ENABLE_HA_PROXY=1; Ray
ships the haproxy binary). --no-haproxy keeps Serve's HTTP proxy actor; --plain, Serve's defaults.

    python -m benchmarks.router_overhead [--requests 1000] [--warmup 300] [--seconds 20] [--no-haproxy | --plain] [--no-floor]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

import sys as _sys
from pathlib import Path as _Path

if __package__ in (None, ""):  # run as `python benchmarks/<name>.py`: the repo root must be importable
    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))

from benchmarks._load import BODY, Tally, closed_loop, one
from benchmarks._served import ServedApp, Stub, gateway_config

FAST_PORT, SLOW_PORT = 18101, 18102  # away from 9101, where HAProxy serves its metrics
LEVELS = (64, 256, 512)
WIDE = {"max_concurrency": 1024, "queue_limit": 1024, "timeout_s": 60, "coalesce": False, "cache_max_entries": 0}


async def added_latency(app_url: str, stub_url: str, *, requests: int, warmup: int) -> tuple[Tally, Tally]:
    """One client; direct and router requests alternate so both see the same machine. The
    first `warmup` pairs are not counted: a replica's first requests, and the seconds after
    an app starts, are not its steady state."""
    direct, routed = Tally(), Tally()
    async with aiohttp.ClientSession() as session:
        for i in range(requests + warmup):
            warm = i < warmup
            await one(session, f"{stub_url}/chat/completions", {**BODY, "model": "stub"}, {}, Tally() if warm else direct)
            await one(session, f"{app_url}/v1/chat/completions", {**BODY, "model": "server/s-fast"}, {},
                      Tally() if warm else routed)
    return direct, routed


async def throughput(app_url: str, stub_url: str, *, clients: int, seconds: float) -> tuple[Tally, Tally]:
    direct = await closed_loop(f"{stub_url}/chat/completions", body=lambda: {**BODY, "model": "stub"},
                               concurrency=clients, duration_s=seconds, warmup_s=2)
    routed = await closed_loop(f"{app_url}/v1/chat/completions", body=lambda: {**BODY, "model": "server/s-slow"},
                               concurrency=clients, duration_s=seconds, warmup_s=3)
    return direct, routed


def print_latency(title: str, direct: Tally, routed: Tally, *, label: str = "router") -> None:
    print(f"\n{title}")
    print(f"  direct  p50 {direct.p50() * 1e3:6.2f} ms  p95 {direct.pct(0.95) * 1e3:6.2f} ms")
    print(f"  {label:<7} p50 {routed.p50() * 1e3:6.2f} ms  p95 {routed.pct(0.95) * 1e3:6.2f} ms")
    print(f"  ADDED   p50 {(routed.p50() - direct.p50()) * 1e3:6.2f} ms  "
          f"p95 {(routed.pct(0.95) - direct.pct(0.95)) * 1e3:6.2f} ms")


async def measure(app_url: str, fast: Stub, slow: Stub, args: argparse.Namespace) -> None:
    direct, routed = await added_latency(app_url, fast.url, requests=args.requests, warmup=args.warmup)
    print_latency(f"added latency at one client, zero-latency upstream ({args.requests} requests each, alternating)",
                  direct, routed)
    print(f"\nthroughput, upstream answers in 1 s ({args.seconds:.0f} s per measurement)")
    print(f"  {'clients':>7} {'direct req/s':>13} {'router req/s':>13} {'ratio':>6} {'router p50 s':>13} {'lost':>5}")
    for clients in LEVELS:
        d, r = await throughput(app_url, slow.url, clients=clients, seconds=args.seconds)
        print(f"  {clients:>7} {d.rate():>13.1f} {r.rate():>13.1f} {r.rate() / d.rate():>6.2f} {r.p50():>13.2f} "
              f"{r.lost() + d.lost():>5}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="Requests per path for the latency part.")
    parser.add_argument("--warmup", type=int, default=300, help="Uncounted request pairs before the latency part.")
    parser.add_argument("--seconds", type=float, default=20.0, help="Measured seconds per throughput run.")
    parser.add_argument("--plain", action="store_true", help="Serve's default mode, not throughput-optimized.")
    parser.add_argument("--no-haproxy", action="store_true", help="Throughput-optimized, but through Serve's proxy actor.")
    parser.add_argument("--no-floor", action="store_true", help="Skip the Serve floor (benchmarks/serve_floor.py).")
    args = parser.parse_args()
    servers = [{"name": "fast", "base_url": f"http://127.0.0.1:{FAST_PORT}/v1", **WIDE},
               {"name": "slow", "base_url": f"http://127.0.0.1:{SLOW_PORT}/v1", **WIDE}]
    env = {} if args.plain else {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    if not (args.plain or args.no_haproxy):
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    print(f"router overhead benchmark ({' '.join(f'{k}={v}' for k, v in env.items()) or 'Serve defaults'}), "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    with Stub(FAST_PORT, latency_s=0.0) as fast, Stub(SLOW_PORT, latency_s=1.0) as slow:
        with ServedApp(gateway_config(servers=servers), env=env) as app:
            asyncio.run(measure(app.url, fast, slow, args))
        if not args.no_floor:
            with ServedApp(floor_config(fast.url), env=env) as floor:
                direct, routed = asyncio.run(added_latency(floor.url, fast.url, requests=args.requests, warmup=args.warmup))
            print_latency("the Serve floor, same mode (benchmarks/serve_floor.py: an ingress, one handle hop, the same "
                          "POST; none of our code)", direct, routed, label="floor")


def floor_config(stub_url: str) -> dict:
    return {"proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": 8000},
            "applications": [{"name": "floor", "route_prefix": "/", "import_path": "benchmarks.serve_floor:build_floor_app",
                              "args": {"base_url": stub_url}}]}


if __name__ == "__main__":
    main()
