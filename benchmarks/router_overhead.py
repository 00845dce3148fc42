"""What the router costs a request: added latency at one client, throughput at many.

In one run, side by side, it sends the same pass-through chat requests straight to a stub
upstream ("direct") and through the app (`server/<name>`: the router, the ServerProxy and
its fair queue, admission and accounting, real HTTP to the same stub), for two set-ups:
- shipped: `serve_config.yaml` as `make serve` runs it (colm-serve run: Serve's
  throughput-optimized mode, HAProxy), with both its applications and their vLLM engines up
  and idle, the sqlite store, two API keys with budgets, coalescing and cache at their
  defaults. Its one upstream is replaced by the stubs, with the upstream's `max_concurrency`
  and `queue_limit` raised to 1024 (the stand-in's 8 would measure the stand-in);
- lightest: a gateway-only app (no client model), the in-memory store, no keys, coalescing
  and cache off, the same proxy mode.
For each: 1. added latency: one client, a zero-latency stub, direct and router requests
alternating; 2. throughput: 64, 256 and 512 clients on a stub that waits 1 s, each level
direct then router, with the ratio router/direct and every answer that was not a 200.
3. the Serve floor: part 1 again on an app of the router's shape with none of our code in it
(benchmarks/serve_floor.py), so the added latency splits into Serve's share and ours.
--plain runs both set-ups on Serve's default proxy (what a bare `serve run` gives).

    python -m benchmarks.router_overhead [--setups shipped lightest] [--plain] [--requests 1000] [--seconds 20] [--no-floor]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import yaml

import sys as _sys
from pathlib import Path as _Path

if __package__ in (None, ""):  # run as `python benchmarks/<name>.py`: the repo root must be importable
    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))

from benchmarks._load import BODY, Tally, closed_loop, one
from benchmarks._served import ROOT, ServedApp, Stub, gateway_config

FAST_PORT, SLOW_PORT = 18101, 18102  # away from 9101, where HAProxy serves its metrics
LEVELS = (64, 256, 512)
WIDE = {"max_concurrency": 1024, "queue_limit": 1024}
LIGHT = {**WIDE, "timeout_s": 60, "coalesce": False, "cache_max_entries": 0}
KEYS = ("sk-bench-one", "sk-bench-two")
_count = itertools.count()


def body(model: str) -> dict[str, Any]:
    """A request no other one repeats, so the shipped cache and coalescing cost their lookups
    but never answer in the upstream's place."""
    return {**BODY, "model": model, "messages": [{"role": "user", "content": f"Say ok. ({next(_count)})"}]}
BUDGETS = {"requests_per_min": 1_000_000, "server_tokens_per_day": 10**12, "cost_usd_per_day": 1e6}


async def added_latency(app_url: str, stub_url: str, *, requests: int, warmup: int, model: str = "server/s-fast",
                        keys: tuple[str, ...] = ()) -> tuple[Tally, Tally]:
    """One client; direct and router requests alternate so both see the same machine. The
    first `warmup` pairs are not counted: a replica's first requests, and the seconds after
    an app starts, are not its steady state."""
    direct, routed = Tally(), Tally()
    async with aiohttp.ClientSession() as session:
        for i in range(requests + warmup):
            warm = i < warmup
            await one(session, f"{stub_url}/chat/completions", body("stub"), {}, Tally() if warm else direct)
            await one(session, f"{app_url}/v1/chat/completions", body(model), _auth(keys, i),
                      Tally() if warm else routed)
    return direct, routed


async def throughput(app_url: str, stub_url: str, *, clients: int, seconds: float, model: str = "server/s-slow",
                     keys: tuple[str, ...] = ()) -> tuple[Tally, Tally]:
    direct = await closed_loop(f"{stub_url}/chat/completions", body=lambda: body("stub"),
                               concurrency=clients, duration_s=seconds, warmup_s=2)
    parts = await asyncio.gather(*(  # the clients split evenly between the keys
        closed_loop(f"{app_url}/v1/chat/completions", body=lambda: body(model), headers=_auth(keys, n),
                    concurrency=share, duration_s=seconds, warmup_s=3)
        for n, share in enumerate(_shares(clients, max(1, len(keys))))))
    routed = Tally(elapsed_s=seconds)
    for part in parts:
        routed.add(part)
    return direct, routed


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _auth(keys: tuple[str, ...], n: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[n % len(keys)]}"} if keys else {}


def print_latency(title: str, direct: Tally, routed: Tally, *, label: str = "router") -> None:
    print(f"\n{title}")
    print(f"  direct  p50 {direct.p50() * 1e3:6.2f} ms  p95 {direct.pct(0.95) * 1e3:6.2f} ms")
    print(f"  {label:<7} p50 {routed.p50() * 1e3:6.2f} ms  p95 {routed.pct(0.95) * 1e3:6.2f} ms")
    print(f"  ADDED   p50 {(routed.p50() - direct.p50()) * 1e3:6.2f} ms  "
          f"p95 {(routed.pct(0.95) - direct.pct(0.95)) * 1e3:6.2f} ms")


@dataclass
class SetUp:
    name: str
    config: dict[str, Any]
    fast_model: str
    slow_model: str
    keys: tuple[str, ...] = ()
    ready: str | None = None


def shipped(fast_url: str, slow_url: str) -> SetUp:
    """serve_config.yaml as shipped, its upstream replaced by the two stubs (see the docstring)."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    args = next(a for a in config["applications"] if a["name"] == "colm")["args"]
    (local,) = args["servers"]
    args["servers"] = [{**local, **WIDE, "name": "fast", "base_url": fast_url},
                       {**local, **WIDE, "name": "slow", "base_url": slow_url}]
    for spec, server in zip(args["specialists"], ("fast", "slow", "slow", "slow")):
        spec["server"], spec["model"] = server, "stub"
    args["auth"] = {"keys": [{"name": f"key-{n}", "key_sha256": hashlib.sha256(k.encode()).hexdigest()}
                             for n, k in enumerate(KEYS)]}
    args["budgets"] = BUDGETS
    fast, slow = (f"server/{args['specialists'][i]['name']}" for i in (0, 1))
    return SetUp("shipped", config, fast, slow, KEYS, ready="colm-client")


def lightest(fast_url: str, slow_url: str) -> SetUp:
    servers = [{"name": "fast", "base_url": fast_url, **LIGHT}, {"name": "slow", "base_url": slow_url, **LIGHT}]
    return SetUp("lightest", gateway_config(servers=servers), "server/s-fast", "server/s-slow")


async def measure(app_url: str, fast: Stub, slow: Stub, setup: SetUp, args: argparse.Namespace) -> dict[str, Any]:
    direct, routed = await added_latency(app_url, fast.url, requests=args.requests, warmup=args.warmup,
                                         model=setup.fast_model, keys=setup.keys)
    print_latency(f"added latency at one client, zero-latency upstream ({args.requests} requests each, alternating)",
                  direct, routed)
    result = {"p50_ms": (routed.p50() - direct.p50()) * 1e3, "p95_ms": (routed.pct(0.95) - direct.pct(0.95)) * 1e3}
    print(f"\nthroughput, upstream answers in 1 s ({args.seconds:.0f} s per measurement)")
    print(f"  {'clients':>7} {'direct req/s':>13} {'router req/s':>13} {'ratio':>6} {'router p50 s':>13} {'not 200':>8}")
    for clients in LEVELS:
        d, r = await throughput(app_url, slow.url, clients=clients, seconds=args.seconds, model=setup.slow_model,
                                keys=setup.keys)
        errors = {status: n for status, n in r.statuses.items() if status != 200}
        result[clients] = (r.rate() / d.rate(), errors)
        print(f"  {clients:>7} {d.rate():>13.1f} {r.rate():>13.1f} {r.rate() / d.rate():>6.2f} {r.p50():>13.2f} "
              f"{sum(errors.values()):>8} {errors or ''}")
    return result


def summary(results: dict[str, dict[str, Any]]) -> None:
    print("\nside by side (added latency at one client; router/direct throughput; answers not 200 at 512 clients)")
    print(f"  {'set-up':<9} {'+p50 ms':>8} {'+p95 ms':>8} " + " ".join(f"{f'x @{c}':>7}" for c in LEVELS) + f" {'errors @512':>12}")
    for name, r in results.items():
        print(f"  {name:<9} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} " + " ".join(f"{r[c][0]:>7.2f}" for c in LEVELS)
              + f" {sum(r[512][1].values()):>12}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", nargs="+", default=["shipped", "lightest"], choices=("shipped", "lightest"))
    parser.add_argument("--requests", type=int, default=1000, help="Requests per path for the latency part.")
    parser.add_argument("--warmup", type=int, default=300, help="Uncounted request pairs before the latency part.")
    parser.add_argument("--seconds", type=float, default=20.0, help="Measured seconds per throughput run.")
    parser.add_argument("--plain", action="store_true", help="Serve's default proxy, as a bare `serve run` gives.")
    parser.add_argument("--no-floor", action="store_true", help="Skip the Serve floor (benchmarks/serve_floor.py).")
    args = parser.parse_args()
    mode = "Serve's default proxy (--plain)" if args.plain else "colm-serve run: throughput-optimized, HAProxy"
    print(f"router overhead benchmark, {mode}, {time.strftime('%Y-%m-%d %H:%M')}")
    results: dict[str, dict[str, Any]] = {}
    with Stub(FAST_PORT, latency_s=0.0) as fast, Stub(SLOW_PORT, latency_s=1.0) as slow:
        for name in args.setups:
            setup = {"shipped": shipped, "lightest": lightest}[name](fast.url, slow.url)
            print(f"\n=== {name} ===")
            with ServedApp(setup.config, plain=args.plain, ready=setup.ready, ready_key=(setup.keys or (None,))[0]) as app:
                results[name] = asyncio.run(measure(app.url, fast, slow, setup, args))
        if not args.no_floor:
            with ServedApp(floor_config(fast.url), plain=args.plain) as floor:
                direct, routed = asyncio.run(added_latency(floor.url, fast.url, requests=args.requests, warmup=args.warmup))
            print_latency("the Serve floor, same mode (benchmarks/serve_floor.py: an ingress, one handle hop, the same "
                          "POST; none of our code)", direct, routed, label="floor")
    summary(results)


def floor_config(stub_url: str) -> dict:
    return {"proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": 8000},
            "applications": [{"name": "floor", "route_prefix": "/", "import_path": "benchmarks.serve_floor:build_floor_app",
                              "args": {"base_url": stub_url}}]}


if __name__ == "__main__":
    main()
