"""Closed-loop load with aiohttp: N workers, each sending its next request when the last ends.

The same client drives the direct path and the router path, so what differs is the path.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

BODY = {"messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 8}


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    refused_without_retry_after: int = 0
    elapsed_s: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    def rate(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    def lost(self) -> int:
        """Answers neither 200 nor a clear 429 with Retry-After."""
        refused = self.statuses.get(429, 0) - self.refused_without_retry_after
        return sum(self.statuses.values()) - self.ok - refused

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def add(self, other: "Tally") -> None:
        self.latencies += other.latencies
        self.refused_without_retry_after += other.refused_without_retry_after
        for status, n in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n

    def p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")


async def one(session: aiohttp.ClientSession, url: str, body: dict, headers: dict, tally: Tally) -> None:
    t0 = time.perf_counter()
    try:
        async with session.post(url, json=body, headers=headers) as resp:
            await resp.read()
            status = resp.status
            if status == 429 and "Retry-After" not in resp.headers:
                tally.refused_without_retry_after += 1
    except (aiohttp.ClientError, asyncio.TimeoutError):
        status = -1
    tally.statuses[status] = tally.statuses.get(status, 0) + 1
    if status == 200:
        tally.latencies.append(time.perf_counter() - t0)


async def closed_loop(url: str, *, body: Callable[[], dict], concurrency: int, duration_s: float,
                      headers: dict | None = None, warmup_s: float = 0.0) -> Tally:
    """`concurrency` workers for `duration_s` (after `warmup_s` of unmeasured load).

    A request counts where it *ends*: what completes inside the window, over the window. Those
    still in flight when it closes are cancelled, not waited for, since with a deep queue the
    drain would take as long as the queue is deep and would halve the measured rate."""
    tally, warm = Tally(), Tally()
    connector = aiohttp.TCPConnector(limit=concurrency + 8)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        measuring_from = time.perf_counter() + warmup_s
        stop = measuring_from + duration_s

        async def worker() -> None:
            while time.perf_counter() < stop:
                sample = Tally()
                await one(session, url, body(), headers or {}, sample)
                (tally if measuring_from <= time.perf_counter() <= stop else warm).add(sample)

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        try:
            await asyncio.sleep(max(0.0, stop - time.perf_counter()))
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        tally.elapsed_s = duration_s
    return tally


async def drained_loop(url: str, *, body: Callable[[], dict], concurrency: int, headers: dict | None = None,
                       until: asyncio.Event, window: tuple[float, float] | None = None) -> tuple[Tally, Tally]:
    """`concurrency` workers until `until` is set; then each finishes the request it has in
    flight, so every request sent is counted: (the requests that ended inside `window`, which
    is (start, end) in perf_counter seconds, with its length as elapsed; all of them)."""
    everything, inside = Tally(), Tally()
    if window:
        inside.elapsed_s = window[1] - window[0]
    connector = aiohttp.TCPConnector(limit=concurrency + 8)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:

        async def worker() -> None:
            while not until.is_set():
                sample = Tally()
                await one(session, url, body(), headers or {}, sample)
                everything.add(sample)
                if window and window[0] <= time.perf_counter() <= window[1]:
                    inside.add(sample)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return inside, everything
