"""Fair share at the app's front door, in the real app: a flooding key does not starve a light one.

A second, gateway-only app (router and ServerProxy, no client model) is deployed next to the
test app, in front of a stub upstream that answers in 1 s with max_concurrency 8. The heavy
key keeps 200 pass-through requests in flight; the light key's p95 under that flood must stay
within a generous bound of its unloaded p95. Serve's first-come queues in front of the fair
queue (34x in the issue that found it) would fail this by far. benchmarks/fairness.py measures
the same on a quiet machine.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from benchmarks._load import Tally
from benchmarks._served import Stub
from benchmarks.fairness import config, light_requests, under_flood

pytestmark = pytest.mark.serve
BOUND = 4.0  # the issue asks <= 2.0 on a quiet host (benchmarks/fairness.py); CI shares 2 cores with the app
FLOOD, LIGHT = 200, 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def fair_app(app_url, ray_driver):
    from ray import serve

    from colm_serve.app import build_app

    port = _free_port()
    with Stub(port, latency_s=1.0):
        args = config(queue_limit=256)["applications"][0]["args"]
        args["servers"][0]["base_url"] = f"http://127.0.0.1:{port}/v1"
        serve.run(build_app(args), name="fairness", route_prefix="/fairness", blocking=False)
        try:
            yield f"{app_url}/fairness/v1/chat/completions"
        finally:
            serve.delete("fairness")


def test_a_flooding_key_does_not_starve_a_light_one_at_the_front_door(fair_app):
    async def measure() -> tuple[Tally, Tally, Tally]:
        unloaded = await light_requests(fair_app, LIGHT)
        flooded, heavy = await under_flood(fair_app, flood=FLOOD, light=LIGHT)
        return unloaded, flooded, heavy

    unloaded, flooded, heavy = asyncio.run(measure())
    assert unloaded.lost() == 0 and flooded.lost() == 0, (unloaded.statuses, flooded.statuses)
    assert sum(heavy.statuses.values()) >= FLOOD and heavy.lost() == 0, heavy.statuses  # every flood request counted
    assert unloaded.ok == LIGHT and flooded.ok == LIGHT
    ratio = flooded.pct(0.95) / unloaded.pct(0.95)
    assert ratio <= BOUND, f"light key p95 {flooded.pct(0.95):.2f}s under the flood vs {unloaded.pct(0.95):.2f}s alone"
