"""Strategies over injected fakes: no Ray, no engines, no network.

`Servers` answers like a real upstream that writes its whole cap (the worst case the bounds
are for) and reports usage the way the server proxy would bill it.
"""

from __future__ import annotations

from collections.abc import Callable

from colm_serve.collab.context import RequestContext
from colm_serve.collab.conversation import Conversation
from colm_serve.collab.selection import AllSelector, EmbeddingSelector, LLMSelector
from colm_serve.collab.steps import Run, Steps
from colm_serve.collab.strategies import Strategy, build_strategies
from colm_serve.collab.strategies.base import outcome_of
from colm_serve.config import AppArgs
from colm_serve.outcome import Outcome, Progress
from colm_serve.protocol.openai import ChatCompletionRequest
from colm_serve.server_proxy.limits import message_tokens
from colm_serve.server_proxy.types import UpstreamCall, UpstreamReply
from tests.fakes import FakeClient, FakeUpstreams, app_args

ROLES = {  # a word of each server prompt -> what kind of call it is
    "route questions": "selection",
    "Another assistant writes the final answer": "guidance",
    "You merge expert notes": "summary",
    "You review a draft answer": "critique",
    "Answer the question directly": "prefix",
}


def kind(call: UpstreamCall) -> str:
    system = call.messages[0]["content"] if call.messages[0]["role"] == "system" else ""
    return next((k for word, k in ROLES.items() if word in system), "other")


class Servers(FakeUpstreams):
    """Writes `max_tokens` words for every call (or what `replies[kind]` says) and bills it."""

    def __init__(self, replies: dict[str, str] | None = None, *, finish_reason: str = "length", **kw) -> None:
        self.replies = replies or {}
        self.billed: list = []
        super().__init__(reply=self._text, finish_reason=finish_reason, **kw)

    def _text(self, call: UpstreamCall) -> str:
        return self.replies.get(kind(call)) or " ".join(["word"] * call.max_tokens)

    async def chat(self, call: UpstreamCall) -> UpstreamReply:
        reply = await super().chat(call)
        prompt, done = message_tokens(call.messages), min(call.max_tokens, len(reply.text.split()))
        self.billed.append(call.spend(prompt, done))
        return reply.model_copy(update={"prompt_tokens": prompt, "completion_tokens": done, "billed": self.billed[-1]})

    def kinds(self) -> list[str]:
        return [kind(c) for c in self.calls]


class FixedEncoder:
    """A sentence encoder with fixed vectors: the words in a text decide its direction."""

    AXES = ("math", "code", "conversation", "picture")

    def encode(self, texts, normalize_embeddings=True):
        import numpy as np

        rows = []
        for text in texts:
            v = np.array([1.0 + 4 * (axis in text.lower()) for axis in self.AXES])
            rows.append(v / np.linalg.norm(v))
        return rows


def build(args: AppArgs | None = None, *, client: FakeClient | None = None,
          selector: str = "embedding") -> tuple[dict[str, Strategy], FakeClient]:
    args = args or app_args()
    client = client or FakeClient()
    picker = args.specialist(args.selection.selector_specialist or args.reference_server)
    selectors = {"all": AllSelector(), "llm": LLMSelector(picker=picker),
                 "embedding": EmbeddingSelector(model="fixed", encoder_factory=lambda _: FixedEncoder())}
    args = args.model_copy(update={"selection": args.selection.model_copy(update={"strategy": selector})})
    return build_strategies(Steps(args=args, client=client, selectors=selectors)), client


def request(text: str = "What is 2+2?", *, stream: bool = False, **colm) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="colm", messages=[{"role": "user", "content": text}], stream=stream,
                                 colm=colm or None)


def new_run(req: ChatCompletionRequest, servers: FakeUpstreams, **ctx) -> Run:
    return Run(req=req, conv=Conversation.parse(req.messages), ctx=RequestContext(upstreams=servers, **ctx), stream=req.stream)


async def answer(strategy: Strategy, req: ChatCompletionRequest, servers: FakeUpstreams, **ctx) -> tuple[Outcome, Run]:
    run = new_run(req, servers, **ctx)
    strategy.check(req.options())
    return await outcome_of(strategy.events(run)), run


async def stream(strategy: Strategy, req: ChatCompletionRequest, servers: FakeUpstreams) -> list:
    """Every event of a streamed request, in order."""
    run = new_run(req, servers)
    return [event async for event in strategy.events(run)]


def content(events: list) -> str:
    return "".join(e for e in events if isinstance(e, str))


def progress(events: list, step: str | None = None) -> list[Progress]:
    """Progress events of one kind of step (`guidance` matches `guidance:<specialist>`)."""
    return [e for e in events if isinstance(e, Progress) and (step is None or e.step.split(":")[0] == step)]


def first_index(events: list, test: Callable[[object], bool]) -> int:
    return next(i for i, e in enumerate(events) if test(e))
