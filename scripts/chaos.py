"""Chaos run against a running CoLM app: bounded load while replicas are killed.

    python scripts/chaos.py [--url http://127.0.0.1:8000] [--requests 40] [--duration 120]

It sends `--requests` chat requests spread over `--duration` seconds (a mix of `colm-client`
and `colm`, small max_tokens, some streamed), and meanwhile kills one ServerProxy replica
and then the ClientModel replica through Ray (it connects to the app's cluster as a driver
with `ray.init(address="auto")`; it starts nothing). Every request ends as one of:

    answered      200 with an answer (a stream that ends in [DONE] with no error event)
    clear_error   an OpenAI-format error with error.type (HTTP status, or an SSE error event)
    lost          anything else: exception, timeout, dropped stream, body without error.type

and the run exits 1 if any request was lost, 2 if a fault could not be injected.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

QUESTIONS = [
    "What is the capital of France?",
    "Give one tip for writing clean Python code.",
    "What is 17 times 3?",
    "Name a primary colour.",
    "Write one sentence about the sea.",
]
FAULTS = [("ServerProxy-local", 0.3), ("ClientModel", 0.55)]  # (deployment, when: fraction of the run)
USES = {"ServerProxy-local": {"colm"}, "ClientModel": {"colm", "colm-client"}}  # models that need it


@dataclass
class Result:
    kind: str  # answered | clear_error | lost
    model: str
    started_s: float
    latency_s: float
    detail: str = ""


@dataclass
class Fault:
    deployment: str
    at_s: float
    killed: str = ""
    killed_at_s: float | None = None
    error: str = ""
    replaced_after_s: float | None = None


@dataclass
class Run:
    results: list[Result] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    in_flight: Counter = field(default_factory=Counter)  # model -> requests now in flight


# -- requests --------------------------------------------------------------------------


def request_body(rng: random.Random) -> dict:
    question = [{"role": "user", "content": rng.choice(QUESTIONS)}]
    if rng.random() < 0.3:
        return {"model": "colm", "messages": question, "max_tokens": 32, "colm": {"iterations": 0, "top_k": 2}}
    return {"model": "colm-client", "messages": question, "max_tokens": rng.choice([16, 32, 96]),
            "stream": rng.random() < 0.3}


def classify(status: int, text: str, *, stream: bool) -> tuple[str, str]:
    if status == 200 and stream:
        events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
        if not events or events[-1] != "[DONE]":
            return "lost", "stream ended without [DONE]"
        errors = [json.loads(e)["error"] for e in events[:-1] if e.startswith('{"error"')]
        return ("clear_error", f"stream error {errors[0].get('type')}") if errors else ("answered", "")
    try:
        body = json.loads(text)
    except ValueError:
        return "lost", f"{status} with a non-JSON body: {text[:80]!r}"
    if status == 200:
        return ("answered", "") if body.get("choices") else ("lost", "200 without choices")
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("type"):
        return "clear_error", f"{status} {error['type']}: {str(error.get('message'))[:80]}"
    return "lost", f"{status} without an OpenAI error: {text[:80]!r}"


async def one_request(http: httpx.AsyncClient, body: dict, *, t0: float, timeout_s: float) -> Result:
    started = time.monotonic()
    try:
        resp = await asyncio.wait_for(http.post("/v1/chat/completions", json=body), timeout_s)
        kind, detail = classify(resp.status_code, resp.text, stream=bool(body.get("stream")))
    except Exception as exc:  # every failure to get an answer is counted, never raised
        kind, detail = "lost", f"{type(exc).__name__}: {exc}"[:120]
    return Result(kind, body["model"], started - t0, time.monotonic() - started, detail)


async def load(url: str, *, requests: int, duration_s: float, concurrency: int, timeout_s: float, seed: int, run: Run,
               t0: float) -> None:
    rng = random.Random(seed)
    gate = asyncio.Semaphore(concurrency)

    async def paced(i: int, http: httpx.AsyncClient) -> None:
        await asyncio.sleep(i * duration_s / requests)
        async with gate:
            body = request_body(rng)
            run.in_flight[body["model"]] += 1
            try:
                run.results.append(await one_request(http, body, t0=t0, timeout_s=timeout_s))
            finally:
                run.in_flight[body["model"]] -= 1

    async with httpx.AsyncClient(base_url=url, timeout=timeout_s) as http:
        await asyncio.gather(*(paced(i, http) for i in range(requests)))


# -- faults ----------------------------------------------------------------------------


def kill_replica(deployment: str, app: str = "colm") -> str:
    import ray
    from ray.util.state import list_actors

    alive = [a.name for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
             if a.class_name == f"ServeReplica:{app}:{deployment}"]
    if not alive:
        raise RuntimeError(f"no live replica of {app}:{deployment}")
    ray.kill(ray.get_actor(alive[0], namespace="serve"), no_restart=True)
    return alive[0]


def replaced(deployment: str, killed: str, app: str = "colm") -> bool:
    from ray.util.state import list_actors

    return any(a.class_name == f"ServeReplica:{app}:{deployment}" and a.name != killed
               for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000))


async def inject(fault: Fault, *, run: Run, t0: float, watch_s: float) -> None:
    """Kills at the planned time, or a little later, once a request that needs the replica is in flight."""
    await asyncio.sleep(max(0.0, fault.at_s - (time.monotonic() - t0)))
    for _ in range(300):  # up to 30 s
        if any(run.in_flight[m] for m in USES[fault.deployment]):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # into the request, not at its very start
    try:
        fault.killed = await asyncio.to_thread(kill_replica, fault.deployment)
    except Exception as exc:  # reported, and the run exits 2
        fault.error = f"{type(exc).__name__}: {exc}"
        return
    killed_at = time.monotonic()
    fault.killed_at_s = killed_at - t0
    print(f"[{fault.killed_at_s:6.1f}s] killed {fault.killed}", flush=True)
    while time.monotonic() - killed_at < watch_s:
        if await asyncio.to_thread(replaced, fault.deployment, fault.killed):
            fault.replaced_after_s = time.monotonic() - killed_at
            return
        await asyncio.sleep(2)


# -- report ----------------------------------------------------------------------------


def report(run: Run) -> Counter:
    counts = Counter(r.kind for r in run.results)
    print(f"\nsent={len(run.results)} answered={counts['answered']} "
          f"failed_with_clear_error={counts['clear_error']} lost={counts['lost']}")
    by_model = Counter((r.model, r.kind) for r in run.results)
    for (model, kind), n in sorted(by_model.items()):
        print(f"  {model:12s} {kind:12s} {n}")
    for f in run.faults:
        print(f"  fault {f.deployment}: {fault_summary(f, run.results)}")
    for r in run.results:
        if r.kind != "answered":
            print(f"  [{r.started_s:6.1f}s +{r.latency_s:5.1f}s] {r.model}: {r.kind}: {r.detail}")
    return counts


def fault_summary(fault: Fault, results: list[Result]) -> str:
    if fault.error or fault.killed_at_s is None:
        return fault.error or "not injected"
    at = fault.killed_at_s
    hit = Counter(r.kind for r in results if r.started_s <= at <= r.started_s + r.latency_s
                  and r.model in USES[fault.deployment])
    after = [r.started_s + r.latency_s - at for r in results if r.started_s > at and r.kind == "answered"
             and r.model in USES[fault.deployment]]
    replaced = f"{fault.replaced_after_s:.0f}s" if fault.replaced_after_s is not None else "NOT in time"
    recovered = f"{min(after):.0f}s" if after else "never"
    return (f"killed at {at:.0f}s with {sum(hit.values())} dependent requests in flight ({dict(hit)}); "
            f"new replica after {replaced}; first answer started after the kill came {recovered} after it")


async def chaos(args: argparse.Namespace) -> int:
    run, t0 = Run(), time.monotonic()
    if not args.no_faults:
        import ray

        ray.init(address="auto", log_to_driver=False, logging_level="ERROR")
        run.faults = [Fault(name, at * args.duration) for name, at in FAULTS]
    watch = args.duration + args.timeout
    await asyncio.gather(
        load(args.url, requests=args.requests, duration_s=args.duration, concurrency=args.concurrency,
             timeout_s=args.timeout, seed=args.seed, run=run, t0=t0),
        *(inject(f, run=run, t0=t0, watch_s=watch) for f in run.faults),
    )
    counts = report(run)
    if any(f.error for f in run.faults):
        return 2
    return 1 if counts["lost"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds over which requests start")
    parser.add_argument("--concurrency", type=int, default=6, help="requests in flight at most")
    parser.add_argument("--timeout", type=float, default=300.0, help="per request; longer counts as lost")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-faults", action="store_true", help="load only (no Ray access needed)")
    return asyncio.run(chaos(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
