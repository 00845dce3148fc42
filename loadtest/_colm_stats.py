"""Samples of GET /v1/colm/stats during a run, saved as PREFIX_colm_stats.json.

The counters are cumulative since the app started, so the report subtracts the sample
taken at test start from the one at test stop; the samples in between give utilisation
over time (in_flight / max_concurrency per upstream server).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import gevent
import httpx

logger = logging.getLogger("loadtest")


def fetch_stats(host: str, *, api_key: str | None, timeout_s: float = 10.0) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(host.rstrip("/") + "/v1/colm/stats", headers=headers, timeout=timeout_s)
    response.raise_for_status()
    return response.json()


class StatsRecorder:
    """Runs on the master (or the only process): one sampler greenlet per test."""

    def __init__(self, *, host: str, api_key: str | None, interval_s: float) -> None:
        self.host, self.api_key, self.interval_s = host, api_key, interval_s
        self.samples: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._greenlet: gevent.Greenlet | None = None
        self._started = False

    def sample(self, label: str) -> None:
        """Errors are kept and shown in the report, never turned into empty stats."""
        try:
            stats = fetch_stats(self.host, api_key=self.api_key)
        except (httpx.HTTPError, ValueError) as e:
            logger.warning("GET /v1/colm/stats failed (%s): %s", label, e)
            self.errors.append(f"{label}: {type(e).__name__}: {e}")
            return
        self.samples.append({"t": time.time(), "label": label, "stats": stats})

    def start(self) -> None:
        self._started = True
        self.sample("start")
        if self.interval_s > 0:
            self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        """Idempotent: Locust may quit (Ctrl-C, SIGTERM) before or after the test stopped."""
        if not self._started:
            return
        self._started = False
        if self._greenlet is not None:
            self._greenlet.kill(block=True)
            self._greenlet = None
        self.sample("stop")

    def _loop(self) -> None:
        while True:
            gevent.sleep(self.interval_s)
            self.sample("during")

    def save(self, path: Path, *, settings: dict[str, Any]) -> None:
        """`settings`: the run's options (without API keys), so a report says what it measured."""
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"host": self.host, "settings": settings, "samples": self.samples, "errors": self.errors}
        path.write_text(json.dumps(body, indent=1), encoding="utf-8")
