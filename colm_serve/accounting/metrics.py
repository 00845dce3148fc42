"""What each client app spent and saved, as Prometheus counters (through Ray Serve's metrics).

Counted by the router when a request is settled, tagged by the client label (bounded: a
configured key's name, or one of a fixed number of anonymous labels) and the model id or
strategy (bounded by config), so the labels cannot grow without bound.
"""

from __future__ import annotations

from colm_serve.protocol.usage import Usage
from colm_serve.server_proxy.metrics import BufferedSink, MetricsSink, NullSink, RayMetricsSink

PREFIX = "colm_router_"
TAGS = ("client", "model")
COUNTERS = {
    "requests": "Requests settled (answered, failed or abandoned).",
    "server_tokens": "Prompt plus completion tokens spent on upstream servers.",
    "client_tokens": "Tokens the local client model read and wrote.",
    "cost_usd": "Upstream cost in USD.",
    "baseline_cost_usd": "What the reference server alone would have charged for the same answers (an estimate).",
    "saved_usd": "Savings of the requests that cost less than their baseline (saving = saved - overspent).",
    "overspent_usd": "Excess of the requests that cost more than their baseline.",
}


def router_metrics(kind: str = "null") -> MetricsSink:
    if kind == "ray":
        return BufferedSink(RayMetricsSink(prefix=PREFIX, counters=COUNTERS, gauges={}, tag_keys=TAGS))
    return NullSink()


def count_request(sink: MetricsSink, *, client: str, model: str, usage: Usage) -> None:
    tags = {"client": client, "model": model}
    sink.count("requests", 1, tags=tags)
    for name in ("server_tokens", "client_tokens", "cost_usd", "baseline_cost_usd"):
        sink.count(name, getattr(usage, name) or 0, tags=tags)
    saving = usage.saving_usd or 0.0  # counters only go up: a saving and a loss each get their own
    sink.count("saved_usd" if saving > 0 else "overspent_usd", abs(saving), tags=tags)
