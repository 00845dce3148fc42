"""The pass-through models, beside `colm`: the client model alone (`colm-client`) and one
server straight through (`server/<name>`), and the model ids that name them. `server_answer`
is also how a strategy hands a whole answer over to a server (cascade's `escalate_to: server`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from colm_serve.client_model.completions import completion_events
from colm_serve.client_model.types import ClientLM
from colm_serve.collab.context import RequestContext
from colm_serve.config import AppArgs, SpecialistConfig
from colm_serve.errors import InvalidRequest, NotFound, UpstreamError
from colm_serve.outcome import Chunk, Completion, Finished, Outcome, with_outcome
from colm_serve.protocol.openai import ChatCompletionRequest

COLM = "colm"
ANSWER_CAP = 512  # a server's whole answer when the request sets no cap
SERVER_PREFIX = "server/"


@dataclass(frozen=True)
class Target:
    kind: str  # "colm", "client" or "server"
    specialist: SpecialistConfig | None = None


def model_ids(args: AppArgs) -> list[str]:
    local = [COLM, args.client_model.name] if args.client_model else []  # a gateway-only app has none
    return local + [SERVER_PREFIX + s.name for s in args.specialists]


def resolve(args: AppArgs, model: str) -> Target:
    if model == COLM and args.client_model:
        return Target("colm")
    if args.client_model and model == args.client_model.name:
        return Target("client")
    if model.startswith(SERVER_PREFIX):
        name = model[len(SERVER_PREFIX):]
        if any(s.name == name for s in args.specialists):
            return Target("server", args.specialist(name))
    raise NotFound(
        f"The model {model!r} does not exist. Available models: {', '.join(model_ids(args))}",
        param="model",
        code="model_not_found",
    )


class PassThrough:
    """`colm-client` (the client model alone) and `server/<name>` (one server straight through)."""

    def __init__(self, *, args: AppArgs, client: ClientLM) -> None:
        self._args, self._client = args, client

    async def events(self, target: Target, req: ChatCompletionRequest, ctx: RequestContext, *, stream: bool) -> AsyncIterator[str | Outcome]:
        if target.kind == "server":
            pieces = self._server(target.specialist, req, ctx, stream)
        else:
            pieces = self._client_only(req, ctx, stream)
        async for event in with_outcome(pieces, ctx.trace):
            yield event

    async def _client_only(self, req: ChatCompletionRequest, ctx: RequestContext, stream: bool) -> AsyncIterator:
        """The client model as vLLM's OpenAI server answers: whole OpenAI bodies (Completion,
        or Chunks), so n, logprobs, tool calls and response_format reach the client app intact."""
        async for event in completion_events(
            self._client, req, model_name=self._args.client_model.name, request_id=ctx.request_id, trace=ctx.trace,
            stream=stream, label=ctx.client, weight=ctx.weight, deadline=ctx.deadline,
        ):
            yield event

    async def _server(self, spec: SpecialistConfig, req: ChatCompletionRequest, ctx: RequestContext, stream: bool) -> AsyncIterator:
        ctx.trace.selected = [spec.name]
        async for piece in server_answer(spec, req, ctx, stream=stream, whole=True):
            yield piece


# What the router reads itself; every other key of the client's body goes to the server as sent.
OWN_KEYS = frozenset({"model", "messages", "colm"})


async def server_answer(spec: SpecialistConfig, req: ChatCompletionRequest, ctx: RequestContext, *, stream: bool,
                        whole: bool = False) -> AsyncIterator:
    """`spec`'s server answers the request as sent. `whole` (the pass-through): the upstream's
    own body, a Completion or its Chunks, every parameter and field intact; otherwise its text
    (pieces when streaming), then Finished, as a step of a strategy takes it."""
    if any(m.has_image() for m in req.messages) and not spec.vision:
        raise InvalidRequest(f"server/{spec.name} does not accept images", param="messages")
    sent = req.sent() if whole else None
    call = ctx.call(
        spec,
        messages=sent["messages"] if sent else [m.model_dump(exclude_none=True) for m in req.messages],
        max_tokens=req.output_limit() or ANSWER_CAP,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=req.top_p,
        seed=req.seed,
        stop=req.stop,
    )
    if sent:
        call.params = {k: v for k, v in sent.items() if k not in OWN_KEYS}
    else:
        vllm = {k: v for k, v in (("min_tokens", req.min_tokens), ("ignore_eos", req.ignore_eos)) if v is not None}
        if req.response_format is not None:  # the answer is the client app's: in the shape it asked for
            vllm["response_format"] = req.sent()["response_format"]
        if vllm:
            call.extra_body = {**(call.extra_body or {}), **vllm}
    try:
        if not stream:  # the unary path can be coalesced and cached
            reply = await ctx.chat(call)
            yield Completion(reply.body) if whole and reply.body is not None else reply.text
            yield Finished(reply.finish_reason)
            return
        async for delta in ctx.chat_stream(call):
            if delta.chunk is not None:
                yield Chunk(delta.chunk)
            elif delta.text:
                yield delta.text
            if delta.billed is not None:
                yield Finished(delta.finish_reason)
    except UpstreamError as err:
        if whole and err.code in CLIENT_FAULTS:  # the app's own parameters, refused: its 400 to fix
            raise InvalidRequest(f"server/{spec.name} refused the request: {err.message}", param=err.param,
                                 code="upstream_invalid_request") from None
        raise


# An upstream's answers that blame the request itself; on the pass-through the request is the app's.
CLIENT_FAULTS = frozenset({"upstream_400", "upstream_422"})
