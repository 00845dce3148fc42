"""The ServerProxy as the app deploys it (config as a dict, Ray metrics by name) and the metrics sinks (no Ray started)."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict

from colm_serve.server_proxy.proxy import ServerProxy
from colm_serve.server_proxy.metrics import COUNTERS, GAUGES, PREFIX, BufferedSink, RayMetricsSink
from tests.server_proxy.conftest import make_call, server_config


class RecordingSink:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], float] = defaultdict(float)
        self.gauges: dict[str, float] = {}

    def count(self, name, value, *, tags):
        self.counts[(name, tags["client"])] += value

    def gauge(self, name, value, *, tags):
        self.gauges[name] = value


class FakeMetric:
    def __init__(self, name, description="", tag_keys=None):
        self.name, self.tag_keys, self.calls = name, tag_keys, []

    def inc(self, value, tags=None):
        self.calls.append(("inc", value, tags))

    def set(self, value, tags=None):
        self.calls.append(("set", value, tags))


class FakeMetricsModule:
    Counter = Gauge = FakeMetric


async def test_server_proxy_takes_its_config_as_a_dict_and_counts_into_its_sink(sim) -> None:
    sink = RecordingSink()
    config = server_config(sim)
    proxy = ServerProxy(config.model_dump(), metrics=sink)
    reply = await proxy.chat(make_call("via proxy", client="app"))
    deltas = [d async for d in proxy.chat_stream(make_call("via proxy stream", client="app"))]
    stats = proxy.stats()
    await proxy.check_health()
    assert reply.text and "".join(d.text for d in deltas)
    assert stats["upstream_calls"] == 2 and stats["keys"]["app"]["requests"] == 2
    assert sink.counts[("upstream_calls", "app")] == 2 and sink.counts[("requests", "app")] == 2
    assert sink.gauges["in_flight"] == 0 and sink.gauges["queue_depth"] == 0


def test_ray_sink_tags_by_server_and_client_and_skips_zero() -> None:
    sink = RayMetricsSink(module=FakeMetricsModule)
    sink.count("cost_usd", 0.5, tags={"server": "s", "client": "c"})
    sink.count("cost_usd", 0, tags={"server": "s", "client": "c"})
    sink.gauge("breaker_state", 2, tags={"server": "s", "client": "_all"})
    counter = sink._counters["cost_usd"]
    assert counter.name == PREFIX + "cost_usd" and counter.tag_keys == ("server", "client")
    assert counter.calls == [("inc", 0.5, {"server": "s", "client": "c"})]
    assert sink._gauges["breaker_state"].calls == [("set", 2, {"server": "s", "client": "_all"})]
    assert set(sink._counters) == set(COUNTERS) and set(sink._gauges) == set(GAUGES)


def test_real_ray_sink_builds_without_starting_ray() -> None:
    # A fresh interpreter: earlier tests in this session may have started Ray themselves.
    probe = (
        "import ray\n"
        "from colm_serve.server_proxy.metrics import RayMetricsSink\n"
        "RayMetricsSink().count('requests', 1, tags={'server': 's', 'client': 'c'})\n"
        "assert not ray.is_initialized(), 'the sink started Ray'\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_server_proxy_takes_the_ray_sink_by_name(sim) -> None:
    proxy = ServerProxy(server_config(sim).model_dump(), metrics="ray")
    assert isinstance(proxy._stats._sink, BufferedSink) and isinstance(proxy._stats._sink._sink, RayMetricsSink)


async def test_buffered_metrics_add_up_and_reach_the_sink_within_the_interval() -> None:
    import asyncio

    sink = RecordingSink()
    buffered = BufferedSink(sink, interval_s=0.05)
    for _ in range(100):
        buffered.count("requests", 1, tags={"server": "s", "client": "a"})
        buffered.gauge("in_flight", 3, tags={"server": "s", "client": "_all"})
    assert sink.counts == {}  # nothing per increment
    await asyncio.sleep(0.1)
    assert sink.counts[("requests", "a")] == 100 and sink.gauges["in_flight"] == 3


async def test_the_deployed_proxy_closes_its_http_session_on_a_graceful_stop(sim) -> None:
    from colm_serve.server_proxy.proxy import ServedProxy

    # On a plain ServerProxy: garbage collection would call a ServedProxy's async __del__ again
    # and leave that coroutine unawaited; Serve's replica is the one that awaits it.
    proxy = ServerProxy(server_config(sim).model_dump())
    await proxy.chat(make_call())  # opens the unary session
    assert not proxy._client.is_closed() and not proxy._post.closed
    await ServedProxy.__del__(proxy)  # what Serve awaits when it stops the replica
    assert proxy._client.is_closed() and proxy._post.closed
