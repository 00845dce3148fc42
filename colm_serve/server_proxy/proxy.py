"""ServerProxy: everything between a router's UpstreamCall and one upstream server.

A plain class that needs no Ray: the app builder deploys it as `ServerProxy-<server>`, one
per upstream server, and tests drive it directly.

Order of work for `chat`: response cache -> single-flight -> breaker (fail fast) -> fair
admission queue -> retry loop, whose every attempt takes rpm/tpm tokens before it sends.
`chat_stream` passes through: breaker, queue, limits, and retries until the first chunk.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import openai

from colm_serve.config import ServerConfig
from colm_serve.deadline import Deadline
from colm_serve.errors import InvalidRequest
from colm_serve.server_proxy.breaker import CircuitBreaker
from colm_serve.server_proxy.coalesce import ResponseCache, SingleFlight, call_key
from colm_serve.server_proxy.fairness import FairQueue
from colm_serve.server_proxy.limits import RateLimits, estimate_tokens
from colm_serve.server_proxy.metrics import METRICS_SINKS, MetricsSink
from colm_serve.server_proxy.retry import RetryLoop
from colm_serve.server_proxy.stats import BREAKER_LEVEL, ProxyStats
from colm_serve.server_proxy.streaming import OpenStream, StreamTally, relay
from colm_serve.server_proxy.types import UpstreamCall, UpstreamDelta, UpstreamReply

logger = logging.getLogger("colm_serve.server_proxy")

class ServerProxy:
    """One upstream server's proxy: fairness, limits, retries, breaker, coalescing, cache, stats.

    `server` may arrive as a dict once it has crossed a Ray boundary. Injected for tests:
    `client` (the openai SDK client), `clock`, `metrics` (a MetricsSink or a name in
    METRICS_SINKS; the app deploys it with "ray") and `rng` (backoff jitter).
    """

    def __init__(
        self,
        server: ServerConfig | dict[str, Any],
        *,
        client: openai.AsyncOpenAI | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: MetricsSink | str = "null",
        rng: random.Random | None = None,
    ) -> None:
        server = ServerConfig.model_validate(server) if isinstance(server, dict) else server
        self.server = server
        metrics = METRICS_SINKS[metrics]() if isinstance(metrics, str) else metrics
        self._client = client or openai.AsyncOpenAI(
            base_url=server.base_url, api_key=server.api_key(), max_retries=0, timeout=server.timeout_s
        )
        self._clock = clock
        self._stats = ProxyStats(server.name, sink=metrics)
        self._breaker = CircuitBreaker(server.breaker, server=server.name, clock=clock, on_change=self._breaker_moved)
        self._queue = FairQueue(
            max_concurrency=server.max_concurrency,
            queue_limit=server.queue_limit,
            clock=clock,
            on_change=self._queue_moved,
        )
        self._limits = RateLimits(rpm=server.rpm, tpm=server.tpm, clock=clock)
        self._retry = RetryLoop(server.retry, self._breaker, server=server.name, secrets=self._secrets(), rng=rng or random.Random())
        self._coalesce = server.coalesce
        self._flights: SingleFlight[UpstreamReply] = SingleFlight()
        self._cache = ResponseCache(ttl_s=server.cache_ttl_s, max_entries=server.cache_max_entries, clock=clock)

    # -- the API -----------------------------------------------------------------------

    async def chat(self, call: UpstreamCall) -> UpstreamReply:
        self._check_server(call)
        started = self._clock()
        self._stats.add(call.client, requests=1)
        try:
            return await self._answer(call, started)
        except Exception:
            self._stats.add(call.client, errors=1)
            raise

    async def chat_stream(self, call: UpstreamCall) -> AsyncIterator[UpstreamDelta]:
        """Through a handle: `handle.options(stream=True).chat_stream.remote(call)`."""
        self._check_server(call)
        self._stats.add(call.client, requests=1)
        deadline = Deadline.from_wall(call.deadline, clock=self._clock)
        try:
            self._breaker.check()
            async with self._queue.slot(call.client, call.weight, deadline):
                opened, _ = await self._retry.run(
                    lambda n: self._open_stream(call, n, deadline), deadline=deadline
                )
                tally = StreamTally()
                async for delta in relay(opened, tally=tally, deadline=deadline, breaker=self._breaker):
                    yield delta
            yield self._stream_end(call, tally)
        except Exception:
            self._stats.add(call.client, errors=1)
            raise

    def stats(self) -> dict[str, Any]:
        return self._stats.snapshot(
            queue_depth=self._queue.waiting,
            in_flight=self._queue.in_flight,
            max_concurrency=self._queue.max_concurrency,
            breaker=self._breaker.state,
        )

    async def check_health(self) -> None:
        """The replica's own health. An upstream outage shows in the breaker instead: a
        restart would not cure it, and would drop every queued call of every client."""
        queue = self._queue
        if not (0 <= queue.in_flight <= queue.max_concurrency and queue.waiting >= 0):
            raise RuntimeError(
                f"admission counters are inconsistent: {queue.in_flight} in flight, {queue.waiting} waiting"
            )

    async def aclose(self) -> None:
        await self._client.close()

    # -- non-streaming path ------------------------------------------------------------

    async def _answer(self, call: UpstreamCall, started: float) -> UpstreamReply:
        deadline = Deadline.from_wall(call.deadline, clock=self._clock)
        deadline.check("arriving at the server proxy")
        key = call_key(call)
        if self._cacheable(call) and (hit := self._cache.get(key)) is not None:
            return self._shared(call, hit, started, kind="cache_hits")
        if not self._coalesce:
            return await self._fetch(call, key, deadline, started)
        reply, joined = await self._flights.run(
            key, lambda: self._fetch(call, key, deadline, started), deadline=deadline
        )
        return self._shared(call, reply, started, kind="coalesced") if joined else reply

    async def _fetch(self, call: UpstreamCall, key: str, deadline: Deadline, started: float) -> UpstreamReply:
        self._breaker.check()
        async with self._queue.slot(call.client, call.weight, deadline):
            completion, attempts = await self._retry.run(lambda n: self._attempt(call, n, deadline), deadline=deadline)
        reply = self._to_reply(call, completion, attempts=attempts, started=started)
        spent = reply.prompt_tokens + reply.completion_tokens
        self._stats.add(call.client, server_tokens=spent, cost_usd=reply.cost_usd)
        if self._cacheable(call):
            self._cache.put(key, reply)
        return reply

    async def _attempt(self, call: UpstreamCall, n: int, deadline: Deadline) -> Any:
        estimate = estimate_tokens(call)
        await self._limits.acquire(estimate, deadline)
        self._stats.add(call.client, upstream_calls=1, retries=int(n > 1))
        completion = await self._client.chat.completions.create(
            **self._params(call), timeout=deadline.cap(self.server.timeout_s)
        )
        usage = completion.usage
        self._limits.settle(estimated=estimate, actual=usage.total_tokens if usage else estimate)
        return completion

    def _to_reply(self, call: UpstreamCall, completion: Any, *, attempts: int, started: float) -> UpstreamReply:
        choice = completion.choices[0] if completion.choices else None
        if completion.usage is None:
            logger.warning("upstream %s sent no usage; estimating tokens", call.server)
        prompt = completion.usage.prompt_tokens if completion.usage else estimate_tokens(call) - call.max_tokens
        text = (choice.message.content if choice else None) or ""
        done = completion.usage.completion_tokens if completion.usage else len(text) // 4
        return UpstreamReply(
            text=text,
            prompt_tokens=prompt,
            completion_tokens=done,
            finish_reason=choice.finish_reason if choice else None,
            attempts=attempts,
            latency_s=self._clock() - started,
            cost_usd=call.cost(prompt, done),
        )

    def _shared(self, call: UpstreamCall, reply: UpstreamReply, started: float, *, kind: str) -> UpstreamReply:
        """A reply this call got without its own upstream request: it cost nothing."""
        self._stats.add(call.client, **{kind: 1}, saved_tokens=reply.prompt_tokens + reply.completion_tokens)
        flag = "cached" if kind == "cache_hits" else "coalesced"
        return reply.model_copy(
            update={flag: True, "cost_usd": 0.0, "attempts": 0, "latency_s": self._clock() - started}
        )

    # -- streaming path ----------------------------------------------------------------

    async def _open_stream(self, call: UpstreamCall, n: int, deadline: Deadline) -> OpenStream:
        await self._limits.acquire(estimate_tokens(call), deadline)
        self._stats.add(call.client, upstream_calls=1, retries=int(n > 1))
        stream = await self._client.chat.completions.create(
            **self._params(call),
            stream=True,
            stream_options={"include_usage": True},
            timeout=deadline.cap(self.server.timeout_s),
        )
        chunks = aiter(stream)
        try:
            first = await deadline.wait(anext(chunks, None), "waiting for the first streamed chunk")
        except BaseException:
            await stream.close()
            raise
        return OpenStream(stream=stream, chunks=chunks, first=first)

    def _stream_end(self, call: UpstreamCall, tally: StreamTally) -> UpstreamDelta:
        tally.settle(call)
        cost = call.cost(tally.prompt_tokens, tally.completion_tokens)
        spent = tally.prompt_tokens + tally.completion_tokens
        self._limits.settle(estimated=estimate_tokens(call), actual=spent)
        self._stats.add(call.client, server_tokens=spent, cost_usd=cost)
        return UpstreamDelta(
            prompt_tokens=tally.prompt_tokens,
            completion_tokens=tally.completion_tokens,
            finish_reason=tally.finish_reason,
            cost_usd=cost,
        )

    # -- helpers -----------------------------------------------------------------------

    def _check_server(self, call: UpstreamCall) -> None:
        if call.server != self.server.name:
            raise InvalidRequest(f"call for server {call.server!r} reached the proxy of {self.server.name!r}")

    @staticmethod
    def _cacheable(call: UpstreamCall) -> bool:
        return call.cache and call.deterministic()

    @staticmethod
    def _params(call: UpstreamCall) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": call.model,
            "messages": call.messages,
            "max_tokens": call.max_tokens,
            "temperature": call.temperature,
        }
        optional = {"top_p": call.top_p, "seed": call.seed, "stop": call.stop}
        params.update({k: v for k, v in optional.items() if v is not None})
        return params

    def _secrets(self) -> tuple[str, ...]:
        """Our own keys, so an upstream that echoes one cannot pass it on."""
        found = [getattr(self._client, "api_key", None)]
        if self.server.api_key_env:
            found.append(os.environ.get(self.server.api_key_env))
        return tuple(s for s in found if s and s != "EMPTY")

    def _queue_moved(self) -> None:
        self._stats.gauge("queue_depth", self._queue.waiting)
        self._stats.gauge("in_flight", self._queue.in_flight)

    def _breaker_moved(self, state: str) -> None:
        logger.warning("server %s: circuit breaker is now %s", self.server.name, state)
        self._stats.gauge("breaker_state", BREAKER_LEVEL[state])
