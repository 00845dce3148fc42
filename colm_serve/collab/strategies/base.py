"""The strategy interface: how a `colm` request divides work between servers and the client model.

Every strategy states, in code (and so in GET /v1/colm/strategies and the README):
- which steps run on a server and which on the client model (`STEPS`),
- the bound on what it spends on servers (`bound`, used for budget admission),
- and it leaves a decision in the trace for every choice it makes.
`events` runs the strategy's body as a task and streams what it emits: answer text,
Progress, Finished; a consumer that leaves cancels the body.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from colm_serve.accounting.ledger import Estimate
from colm_serve.client_model import tools
from colm_serve.client_model.completions import openai_logprobs
from colm_serve.collab.selection import Selector
from colm_serve.collab.steps import Run, Steps
from colm_serve.errors import InvalidRequest
from colm_serve.outcome import Outcome, with_outcome
from colm_serve.protocol.openai import ChatCompletionRequest
from colm_serve.protocol.options import ColmOptions

# Options every strategy reads; the rest belong to the strategies that name them.
COMMON_OPTIONS = frozenset({"strategy", "selector", "trace", "progress", "cache", "deadline_s"})
_DONE = object()
TOOL_WRITERS = {
    "server": "the best specialist's server writes the turn as sent (tool calls with OpenAI ids and JSON arguments)",
    "client": "the client model writes the turn, its tool-call arguments valid by construction (structured outputs)",
}


@dataclass(frozen=True)
class Step:
    name: str
    runs_on: Literal["server", "client", "router"]
    what: str


class Strategy(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    STEPS: ClassVar[tuple[Step, ...]]
    OPTIONS: ClassVar[frozenset[str]] = frozenset()
    BOUND: ClassVar[str]  # the server-token bound, in words

    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self.args = steps.args

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "steps": [{"name": s.name, "runs_on": s.runs_on, "what": s.what} for s in self.STEPS],
            "server_token_bound": self.BOUND,
            "options": sorted(self.OPTIONS),
            "tool_calls": {"runs_on": self.tool_writer(), "what": TOOL_WRITERS[self.tool_writer()]},
        }

    def tool_writer(self) -> str:
        """Who writes a turn that may call a tool (one with `tools`): configured per strategy."""
        return self.args.collaboration.tool_calls.get(self.name, "server")

    async def turn(self, run: Run) -> None:
        """A turn that may call a tool is written whole by one writer; any other runs the body."""
        if not run.req.wants_tools():
            await self.body(run)
            return
        writer = self.tool_writer()
        run.trace.decide("tool_calls", writer, TOOL_WRITERS[writer])
        if writer == "client":
            await self.steps.client_turn(run)
            return
        ranked = await self.steps.select(run, selector=self.selector(run.req.options()), k=1)
        await self.steps.hand_over(run, ranked[0], whole=True)

    def check(self, opts: ColmOptions) -> None:
        """A set option this strategy does not read is a mistake worth a 400, not a no-op."""
        for name in sorted(opts.model_fields_set - COMMON_OPTIONS - self.OPTIONS):
            raise InvalidRequest(
                f"colm.{name} does not apply to strategy {self.name!r} (its options: {sorted(self.OPTIONS) or 'none'})",
                param=f"colm.{name}",
            )
        self.selector(opts)

    def check_request(self, req: ChatCompletionRequest) -> None:
        """A request this strategy cannot honour (see collab.params) is a 400 before any work:
        whoever writes a tool turn, its tool_choice must name a way among `tools`."""
        tools.tool_turn(req, content_schema=None)

    def selector(self, opts: ColmOptions) -> Selector:
        name = opts.selector or self.args.selection.strategy
        if name not in self.steps.selectors:
            raise InvalidRequest(f"unknown selector {name!r}; available: {sorted(self.steps.selectors)}", param="colm.selector")
        return self.steps.selectors[name]

    @abstractmethod
    def bound(self, run: Run) -> Estimate:
        """The most this request can spend on servers (tokens and USD)."""

    @abstractmethod
    async def body(self, run: Run) -> None:
        """Emit the answer (text pieces, then Finished) and progress; decide, and trace why."""

    def plan_note(self, run: Run) -> str:
        """The first thing a streamed request shows: what this strategy is about to do."""
        return f"Strategy {self.name}: {self.summary}\n"

    async def events(self, run: Run) -> AsyncIterator:
        """The body's events as they come, ending in the Outcome."""
        queue: asyncio.Queue = asyncio.Queue()
        run.emit = queue.put_nowait
        run.trace.strategy = self.name
        run.note("plan", self.plan_note(run))  # the stream's first bytes, before any step has run
        task = asyncio.create_task(self.turn(run))
        task.add_done_callback(lambda _: queue.put_nowait(_DONE))

        async def pieces() -> AsyncIterator:
            while (item := await queue.get()) is not _DONE:
                yield item
            task.result()  # the body's error, if it failed

        try:
            async for event in with_outcome(pieces(), run.trace):
                if isinstance(event, Outcome) and run.req.logprobs and run.answer_logprobs is not None:
                    event.logprobs = openai_logprobs(run.answer_logprobs)
                yield event
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


def refuse_structured_continuation(req: ChatCompletionRequest, why: str) -> None:
    """Structured outputs constrain what the client model writes from its first token: they
    cannot hold for a continuation of a server's free-text prefix."""
    if req.response_format is not None and req.response_format.type != "text" and not req.wants_tools():
        raise InvalidRequest(f"response_format is not supported by {why}: it continues a server's prefix, which "
                             "structured outputs cannot constrain; use strategy guide or cascade", param="response_format",
                             code="unsupported_parameter")


async def outcome_of(events: AsyncIterator) -> Outcome:
    """The Outcome at the end of a strategy's events (for callers that do not stream)."""
    outcome = None
    async for event in events:
        if isinstance(event, Outcome):
            outcome = event
    assert outcome is not None, "a strategy's events always end in an Outcome"
    return outcome
