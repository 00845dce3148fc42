"""The baselines: the client model alone (`colm-client`) and a server alone (`server/<name>`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from colm_serve.accounting.usage import billed_usage
from colm_serve.client_model.chat import generate_text, to_generation
from colm_serve.client_model.types import ClientLM
from colm_serve.collab.context import RequestContext
from colm_serve.config import AppArgs, SpecialistConfig
from colm_serve.errors import InvalidRequest, NotFound
from colm_serve.outcome import Finished, Outcome, with_outcome
from colm_serve.protocol import ChatCompletionRequest, Trace, Usage
from colm_serve.server_proxy.types import Upstreams

COLM = "colm"
SERVER_PREFIX = "server/"


@dataclass(frozen=True)
class Target:
    kind: str  # "colm", "client" or "server"
    specialist: SpecialistConfig | None = None


def model_ids(args: AppArgs) -> list[str]:
    return [COLM, args.client_model.name] + [SERVER_PREFIX + s.name for s in args.specialists]


def resolve(args: AppArgs, model: str) -> Target:
    if model == COLM:
        return Target("colm")
    if model == args.client_model.name:
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


class Baselines:
    """`colm-client` (the client model alone) and `server/<name>` (one server straight through)."""

    def __init__(self, *, args: AppArgs, upstreams: Upstreams, client: ClientLM) -> None:
        self._args, self._upstreams, self._client = args, upstreams, client

    async def events(self, target: Target, req: ChatCompletionRequest, ctx: RequestContext, *, stream: bool) -> AsyncIterator[str | Outcome]:
        trace = Trace()
        if target.kind == "server":
            pieces = self._server(target.specialist, req, ctx, trace, stream)
        else:
            pieces = self._client_only(req, ctx, trace, stream)
        async for event in with_outcome(pieces, trace):
            yield event

    async def _client_only(self, req: ChatCompletionRequest, ctx: RequestContext, trace: Trace, stream: bool) -> AsyncIterator:
        gen = to_generation(req, model_name=self._args.client_model.name, request_id=ctx.request_id)
        async for piece in generate_text(self._client, gen, trace, stream=stream):
            yield piece

    async def _server(
        self, spec: SpecialistConfig, req: ChatCompletionRequest, ctx: RequestContext, trace: Trace, stream: bool
    ) -> AsyncIterator:
        if any(m.has_image() for m in req.messages) and not spec.vision:
            raise InvalidRequest(f"server/{spec.name} does not accept images", param="messages")
        call = ctx.call(
            spec,
            messages=[m.model_dump(exclude_none=True) for m in req.messages],
            max_tokens=req.output_limit() or 512,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=req.top_p,
            seed=req.seed,
            stop=req.stop,
        )
        trace.selected = [spec.name]
        if not stream:  # the unary path can be coalesced and cached
            reply = await self._upstreams.chat(call)
            trace.usage = billed_usage(reply)
            yield reply.text
            yield Finished(reply.finish_reason)
            return
        async for delta in self._upstreams.chat_stream(call):
            if delta.text:
                yield delta.text
            if delta.finish_reason is not None or delta.completion_tokens:
                trace.usage = Usage(
                    server_prompt_tokens=delta.prompt_tokens,
                    server_completion_tokens=delta.completion_tokens,
                    cost_usd=delta.cost_usd,
                )
                yield Finished(delta.finish_reason)

