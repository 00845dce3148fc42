"""Run many jobs with bounded concurrency and a progress bar; failures are collected, not hidden."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from tqdm import tqdm

logger = logging.getLogger("clients.eval")

T = TypeVar("T")


async def run_bounded(items: Sequence[T], job: Callable[[T], Awaitable[None]], *, concurrency: int,
                      desc: str, label: Callable[[T], str] = str) -> list[tuple[T, BaseException]]:
    """Run `job` on every item, at most `concurrency` at once; return the items that failed.

    One failing item does not stop the others: it is logged with its error and returned, and
    the caller reports it and exits non-zero. Nothing is written for it, so a rerun retries it.
    """
    gate = asyncio.Semaphore(concurrency)
    failures: list[tuple[T, BaseException]] = []

    async def guarded(item: T, bar: tqdm) -> None:
        async with gate:
            try:
                await job(item)
            except Exception as exc:  # reported below and returned to the caller, never dropped
                logger.error("%s: %s failed: %s: %s", desc, label(item), type(exc).__name__, exc)
                failures.append((item, exc))
            finally:
                bar.update(1)

    with tqdm(total=len(items), desc=desc, unit="q", dynamic_ncols=True) as bar:
        await asyncio.gather(*(guarded(item, bar) for item in items))
    return failures
