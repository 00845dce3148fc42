"""Client-model generation, written once: an OpenAI chat request as an engine request, and the
engine's answer as text pieces and a tally. The collaboration's client steps, `colm-client` and
the embedded stand-in server all generate through `generation`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from colm_serve.client_model.types import ClientLM, Generation, GenerationRequest
from colm_serve.errors import InvalidRequest
from colm_serve.outcome import Finished
from colm_serve.protocol.openai import ChatCompletionRequest
from colm_serve.protocol.trace import Trace
from colm_serve.protocol.usage import Usage


def to_generation(
    req: ChatCompletionRequest,
    *,
    model_name: str,
    request_id: str,
    temperature: float = 0.7,
    structured: dict | None = None,
) -> GenerationRequest:
    if any(m.has_image() for m in req.messages):
        raise InvalidRequest(f"{model_name} is a text-only model; it cannot take image parts", param="messages")
    return GenerationRequest(
        messages=[{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages],
        max_tokens=req.output_limit(),
        temperature=temperature if req.temperature is None else req.temperature,
        top_p=req.top_p or 1.0,
        stop=req.stop,
        seed=req.seed,
        request_id=request_id,
        min_tokens=req.min_tokens or 0,
        ignore_eos=bool(req.ignore_eos),
        structured=structured,
    )


async def generation(client: ClientLM, gen: GenerationRequest, *, stream: bool) -> AsyncIterator[str | Generation]:
    """The text as it is written (token pieces when streaming, the whole text otherwise), then
    the Generation it adds up to: text, token counts, finish reason, log-probabilities. A stream
    that ends without a finish reason yields no Generation. Closing this stops the engine at once."""
    if not stream:
        out = await client.generate(gen)
        yield out.text
        yield out
        return
    parts: list[str] = []
    async with aclosing(client.stream(gen)) as deltas:
        async for delta in deltas:
            if delta.text:
                parts.append(delta.text)
                yield delta.text
            if delta.finish_reason:
                yield Generation(text="".join(parts), prompt_tokens=delta.prompt_tokens,
                                 completion_tokens=delta.completion_tokens, finish_reason=delta.finish_reason,
                                 cached_prompt_tokens=delta.cached_prompt_tokens, mean_logprob=delta.mean_logprob,
                                 token_logprobs=delta.token_logprobs)


def bill(trace: Trace, out: Generation) -> None:
    """A generation's client tokens, added to the request's usage."""
    spent = Usage(client_prompt_tokens=out.prompt_tokens, client_completion_tokens=out.completion_tokens)
    trace.usage = trace.usage + spent


async def generate_text(client: ClientLM, gen: GenerationRequest, trace: Trace, *,
                        stream: bool) -> AsyncIterator[str | Finished]:
    """The answer's text (token pieces when streaming, one piece otherwise), then Finished."""
    async with aclosing(generation(client, gen, stream=stream)) as items:
        async for item in items:
            if isinstance(item, Generation):
                bill(trace, item)
                yield Finished(item.finish_reason)
            else:
                yield item
