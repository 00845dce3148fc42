"""ServerProxy: everything between a router's UpstreamCall and one upstream server.

A plain class that needs no Ray: the app builder deploys it as `ServerProxy-<server>`, one
per upstream server, and tests drive it directly.

Order of work for `chat`: response cache -> single-flight -> breaker (fail fast) -> fair
admission queue -> retry loop, whose every attempt takes rpm/tpm tokens before it sends.
`chat_stream` passes through: breaker, queue, limits, and retries until the first chunk.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

import openai

from colm_serve import telemetry
from colm_serve.config import ServerConfig
from colm_serve.deadline import Deadline
from colm_serve.errors import ColmError, InvalidRequest
from colm_serve.fairness import FairQueue
from colm_serve.protocol.openai import SDK_PARAMS
from colm_serve.protocol.usage import Usage
from colm_serve.server_proxy.billing import Billing, SpendSink, worst_case
from colm_serve.server_proxy.breaker import CircuitBreaker
from colm_serve.server_proxy.coalesce import ResponseCache, SingleFlight, call_key
from colm_serve.server_proxy.limits import RateLimits, estimate_tokens, message_tokens
from colm_serve.server_proxy.metrics import METRICS_SINKS, MetricsSink
from colm_serve.server_proxy.retry import AttemptMeter, RetryLoop
from colm_serve.server_proxy.stats import BREAKER_LEVEL, ProxyStats
from colm_serve.server_proxy.streaming import OpenStream, StreamTally, relay
from colm_serve.server_proxy.transport import JsonPost
from colm_serve.server_proxy.types import (
    UpstreamCall,
    UpstreamDelta,
    UpstreamReply,
    cached_prompt_tokens,
)

logger = logging.getLogger("colm_serve.server_proxy")
T = TypeVar("T")
SDK_CREATE = SDK_PARAMS - {"stream"}

class ServerProxy:
    """One upstream server's proxy: fairness, limits, retries, breaker, coalescing, cache, stats.

    `server` may arrive as a dict once it has crossed a Ray boundary. Injected for tests:
    `client` (the openai SDK client for streams), `clock`, `metrics` (a MetricsSink or a name in
    METRICS_SINKS; the app deploys it with "ray") and `rng` (backoff jitter). `spend_sink`
    records spend no caller will be billed for (see billing.py); the app passes a factory,
    called here, since a live ledger cannot cross a Ray boundary.
    """

    def __init__(
        self,
        server: ServerConfig | dict[str, Any],
        *,
        client: openai.AsyncOpenAI | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: MetricsSink | str = "null",
        rng: random.Random | None = None,
        spend_sink: Callable[[], SpendSink] | SpendSink | None = None,
    ) -> None:
        telemetry.setup()
        server = ServerConfig.model_validate(server) if isinstance(server, dict) else server
        self.server = server
        metrics = METRICS_SINKS[metrics]() if isinstance(metrics, str) else metrics
        # aiohttp under the SDK (streams): httpx's connection pool scans every connection on
        # every request, which at hundreds of calls in flight takes much of this proxy's CPU.
        self._client = client or openai.AsyncOpenAI(
            base_url=server.base_url, api_key=server.api_key(), max_retries=0, timeout=server.timeout_s,
            http_client=openai.DefaultAioHttpClient(timeout=server.timeout_s),
        )
        self._post = JsonPost(server.base_url, self._client.api_key, organization=self._client.organization,
                              project=self._client.project)
        self._clock = clock
        self._stats = ProxyStats(server.name, sink=metrics)
        self._breaker = CircuitBreaker(server.breaker, server=server.name, clock=clock, on_change=self._breaker_moved)
        self._queue = FairQueue(
            max_concurrency=server.max_concurrency,
            queue_limit=server.queue_limit,
            anticipate_s=server.anticipate_s,
            clock=clock,
            on_change=self._queue_moved,
        )
        self._limits = RateLimits(rpm=server.rpm, tpm=server.tpm, clock=clock)
        self._retry = RetryLoop(server.retry, self._breaker, server=server.name, secrets=self._secrets(), rng=rng or random.Random())
        self._coalesce = server.coalesce
        self._flights: SingleFlight[UpstreamReply] = SingleFlight()
        self._cache = ResponseCache(ttl_s=server.cache_ttl_s, max_entries=server.cache_max_entries, clock=clock)
        self._billing = Billing(self._stats, _sink(spend_sink))

    # -- the API -----------------------------------------------------------------------

    async def chat(self, call: UpstreamCall) -> UpstreamReply:
        self._check_server(call)
        started = self._clock()
        self._stats.add(call.client, requests=1)
        with telemetry.extract(call.trace_context), telemetry.span("proxy.chat", **_call_fields(call)) as span:
            try:
                reply = await self._answer(call, started)
            except Exception:
                self._stats.add(call.client, errors=1)
                raise
            span.set(cached=reply.cached, coalesced=reply.coalesced, attempts=reply.attempts,
                     retries=max(0, reply.attempts - 1), prompt_tokens=reply.prompt_tokens,
                     completion_tokens=reply.completion_tokens, cost_usd=reply.cost_usd, finish_reason=reply.finish_reason)
            return reply

    async def chat_stream(self, call: UpstreamCall) -> AsyncIterator[UpstreamDelta]:
        """Through a handle: `handle.options(stream=True).chat_stream.remote(call)`."""
        self._check_server(call)
        self._stats.add(call.client, requests=1)
        deadline = Deadline.from_wall(call.deadline, clock=self._clock)
        with telemetry.extract(call.trace_context), telemetry.span("proxy.chat_stream", **_call_fields(call)) as span:
            meter, tally, ended = self._billing.meter(call), StreamTally(whole=call.params is not None), False
            try:
                self._breaker.check()
                async with self._admitted(call, deadline):
                    opened, attempts = await self._retry.run(
                        lambda n: _attempt_span(n, self._open_stream(call, n, deadline, meter)), deadline=deadline,
                        meter=meter,
                    )
                    tally.opened = True
                    async for delta in relay(opened, tally=tally, deadline=deadline, breaker=self._breaker):
                        yield delta
                end, ended = self._stream_end(call, tally, lost=meter.lost), True
                span.set(attempts=attempts, retries=attempts - 1, prompt_tokens=end.prompt_tokens,
                         completion_tokens=end.completion_tokens, cost_usd=end.cost_usd, finish_reason=end.finish_reason)
                yield end
            except Exception:
                self._stats.add(call.client, errors=1)
                raise
            finally:
                if not ended:  # the reader left, or the stream broke: no end delta carries the bill
                    self._billing.unclaimed(call.client, self._abandoned(call, tally, meter))

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
        await self._billing.aclose()
        await self._post.aclose()
        await self._client.close()

    # -- non-streaming path ------------------------------------------------------------

    async def _answer(self, call: UpstreamCall, started: float) -> UpstreamReply:
        deadline = Deadline.from_wall(call.deadline, clock=self._clock)
        deadline.check("arriving at the server proxy")
        cacheable = self._cacheable(call)
        # The key hashes the whole request: not worth it when neither the cache nor a flight reads it.
        key = call_key(call) if self._coalesce or cacheable else ""
        if cacheable and (hit := self._cache.get(key)) is not None:
            return self._cached(call, hit, started)
        if not self._coalesce:
            return await self._fetch(call, key, deadline, started, own=True)
        # The flight has no deadline of its own: each caller waits until its own, and the
        # work goes on while anyone waits (a follower outlives a leader with a shorter one).
        forever = Deadline(None, clock=self._clock)
        landed = await self._flights.run(key, lambda: self._fetch(call, key, forever, started, own=False), deadline=deadline)
        reply = self._billing.landed(landed.result, landed)
        if landed.joined:
            self._stats.add(call.client, coalesced=1, saved_tokens=reply.prompt_tokens + reply.completion_tokens)
        return reply

    async def _fetch(self, call: UpstreamCall, key: str, deadline: Deadline, started: float, *, own: bool) -> UpstreamReply:
        """One upstream request with its retries. `own`: its one caller hears every outcome, so a
        failure's lost attempts ride on the error; a coalesced flight's failure may reach many
        callers, so they are recorded once, to the caller that started it."""
        self._breaker.check()
        meter = self._billing.meter(call)
        try:
            async with self._admitted(call, deadline):
                completion, attempts = await self._retry.run(
                    lambda n: _attempt_span(n, self._attempt(call, n, deadline, meter)), deadline=deadline, meter=meter
                )
        except ColmError as err:
            if not own and err.billed is not None:
                self._billing.unclaimed(call.client, err.billed)
                err.billed = None
            raise
        except asyncio.CancelledError:  # every caller left: an attempt already sent is spent all the same
            self._billing.unclaimed(call.client, meter.lost)
            raise
        reply = self._to_reply(call, completion, attempts=attempts, started=started, lost=meter.lost)
        self._stats.add(call.client, server_tokens=reply.billed.server_tokens, cost_usd=reply.billed.cost_usd)
        if self._cacheable(call):
            self._cache.put(key, reply)
        return reply

    async def _attempt(self, call: UpstreamCall, n: int, deadline: Deadline, meter: AttemptMeter) -> Any:
        estimate = estimate_tokens(call)
        await self._limits.acquire(estimate, deadline)
        self._stats.add(call.client, upstream_calls=1, retries=int(n > 1))
        meter.sent()
        # The JSON object as it came (see transport.py): only the few fields below are read.
        completion = await self._post.post("/chat/completions", self._body(call, cache_key=self.server.prompt_cache_key),
                                           timeout_s=deadline.cap(self.server.timeout_s))
        usage = completion.get("usage") or None
        self._limits.settle(estimated=estimate, actual=usage.get("total_tokens", estimate) if usage else estimate)
        return completion

    def _to_reply(self, call: UpstreamCall, completion: dict, *, attempts: int, started: float, lost: Usage) -> UpstreamReply:
        choices = completion.get("choices") or []
        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
        text = (choice.get("message") or {}).get("content") or ""
        usage = completion.get("usage") or None
        if usage is None:
            logger.warning("upstream %s sent no usage; estimating tokens", call.server)
        prompt = usage.get("prompt_tokens", 0) if usage else message_tokens(call.messages)
        done = usage.get("completion_tokens", 0) if usage else len(text) // 4
        cached = cached_prompt_tokens(usage)
        billed = call.spend(prompt, done, cached, estimated=usage is None) + lost
        return UpstreamReply(
            text=text,
            prompt_tokens=prompt,
            cached_prompt_tokens=cached,
            completion_tokens=done,
            billed=billed,
            finish_reason=choice.get("finish_reason"),
            attempts=attempts,
            latency_s=self._clock() - started,
            cost_usd=billed.cost_usd,
            body=completion if call.params is not None else None,
        )

    def _cached(self, call: UpstreamCall, reply: UpstreamReply, started: float) -> UpstreamReply:
        """A reply from the cache: no upstream request, so nothing to bill."""
        self._stats.add(call.client, cache_hits=1, saved_tokens=reply.prompt_tokens + reply.completion_tokens)
        return reply.model_copy(
            update={"cached": True, "cost_usd": 0.0, "billed": Usage(), "attempts": 0, "latency_s": self._clock() - started}
        )

    # -- streaming path ----------------------------------------------------------------

    async def _open_stream(self, call: UpstreamCall, n: int, deadline: Deadline, meter: AttemptMeter) -> OpenStream:
        await self._limits.acquire(estimate_tokens(call), deadline)
        self._stats.add(call.client, upstream_calls=1, retries=int(n > 1))
        meter.sent()
        stream = await self._client.chat.completions.create(**self._stream_params(call),
                                                            timeout=deadline.cap(self.server.timeout_s))
        chunks = aiter(stream)
        try:
            first = await deadline.wait(anext(chunks, None), "waiting for the first streamed chunk")
        except BaseException:
            await stream.close()
            raise
        return OpenStream(stream=stream, chunks=chunks, first=first)

    def _stream_end(self, call: UpstreamCall, tally: StreamTally, *, lost: Usage) -> UpstreamDelta:
        tally.settle(call)
        billed = call.spend(tally.prompt_tokens, tally.completion_tokens, tally.cached_prompt_tokens,
                            estimated=not tally.reported) + lost
        spent = tally.prompt_tokens + tally.completion_tokens
        self._limits.settle(estimated=estimate_tokens(call), actual=spent)
        self._stats.add(call.client, server_tokens=spent, cost_usd=billed.cost_usd)
        return UpstreamDelta(
            prompt_tokens=tally.prompt_tokens,
            completion_tokens=tally.completion_tokens,
            finish_reason=tally.finish_reason,
            cost_usd=billed.cost_usd,
            billed=billed,
        )

    @staticmethod
    def _abandoned(call: UpstreamCall, tally: StreamTally, meter: AttemptMeter) -> Usage:
        """A stream that ended early: the provider goes on writing to its cap; we bill the worst
        case, or what it reported if its usage already came, plus attempts lost before it."""
        if not tally.opened:
            return meter.lost  # no stream was open: only attempts lost on the way count
        spent = call.spend(tally.prompt_tokens, tally.completion_tokens) if tally.reported else worst_case(call)
        return spent + meter.lost

    # -- helpers -----------------------------------------------------------------------

    @asynccontextmanager
    async def _admitted(self, call: UpstreamCall, deadline: Deadline) -> AsyncIterator[None]:
        """A slot in the fair queue; the wait for it is the `proxy.queue` span."""
        async with AsyncExitStack() as stack:
            with telemetry.span("proxy.queue", waiting=self._queue.waiting, in_flight=self._queue.in_flight):
                await stack.enter_async_context(self._queue.slot(call.client, call.weight, deadline))
            yield

    def _check_server(self, call: UpstreamCall) -> None:
        if call.server != self.server.name:
            raise InvalidRequest(f"call for server {call.server!r} reached the proxy of {self.server.name!r}")

    def _cacheable(self, call: UpstreamCall) -> bool:
        return self._cache.enabled and call.cache and call.deterministic()

    @staticmethod
    def _body(call: UpstreamCall, *, cache_key: bool = True) -> dict[str, Any]:
        """The JSON body as sent. A pass-through sends the client's parameters untouched, with
        our model id and a cap when the client set none (the budget's bound). `cache_key`: the
        call's own `prompt_cache_key` goes with it."""
        if call.params is not None:
            body = {**call.params, "model": call.model, "messages": call.messages}
            if "max_tokens" not in body and "max_completion_tokens" not in body:
                body["max_tokens"] = call.max_tokens
        else:
            body = {"model": call.model, "messages": call.messages, "max_tokens": call.max_tokens,
                    "temperature": call.temperature}
            optional = {"top_p": call.top_p, "seed": call.seed, "stop": call.stop,
                        "prompt_cache_key": call.cache_key if cache_key else None}
            body.update({k: v for k, v in optional.items() if v is not None})
        return {**body, **(call.extra_body or {})}

    def _stream_params(self, call: UpstreamCall) -> dict[str, Any]:
        """The body as the SDK's `create` takes it: its own parameters by name, the rest (a
        provider's extensions) in `extra_body`. Usage is always asked for: billing reads it."""
        body = self._body(call, cache_key=self.server.prompt_cache_key)
        params = {k: v for k, v in body.items() if k in SDK_CREATE}
        options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
        params.update(stream=True, stream_options={**options, "include_usage": True})
        extra = {k: v for k, v in body.items() if k not in SDK_CREATE}
        return {**params, "extra_body": extra} if extra else params

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


class ServedProxy(ServerProxy):
    """The ServerProxy as a Serve deployment runs it: on a graceful stop, Serve awaits
    `__del__`, so spend still being recorded is written and the HTTP session is closed.
    (A plain ServerProxy has no async `__del__`: garbage collection cannot await one.)"""

    async def __del__(self) -> None:
        await self.aclose()


def _sink(given: Callable[[], SpendSink] | SpendSink | None) -> SpendSink | None:
    """A sink is an async function; anything else is a factory that makes one (what crosses Ray)."""
    if given is None or inspect.iscoroutinefunction(given) or inspect.iscoroutinefunction(getattr(given, "__call__", None)):
        return given
    return given()


def _call_fields(call: UpstreamCall) -> dict[str, Any]:
    return {"server": call.server, "model": call.model, "client": call.client, "max_tokens": call.max_tokens}


async def _attempt_span(n: int, attempt: Awaitable[T]) -> T:
    """One attempt at the upstream, its rate-limit wait included, as a `proxy.attempt` span."""
    with telemetry.span("proxy.attempt", attempt=n):
        return await attempt
