"""OpenAI chat requests to local-engine generations; shared by `colm-client` and the embedded server."""

from __future__ import annotations

from collections.abc import AsyncIterator

from colm_serve.client_model.types import GenerationRequest
from colm_serve.errors import InvalidRequest
from colm_serve.outcome import Finished
from colm_serve.protocol import ChatCompletionRequest, Trace, Usage


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


async def generate_text(client, gen: GenerationRequest, trace: Trace, *, stream: bool) -> AsyncIterator[str | Finished]:
    """The answer's text (token pieces when streaming, one piece otherwise), then Finished."""
    if not stream:
        out = await client.generate(gen)
        trace.usage = trace.usage + Usage(client_prompt_tokens=out.prompt_tokens, client_completion_tokens=out.completion_tokens)
        yield out.text
        yield Finished(out.finish_reason)
        return
    async for delta in client.stream(gen):
        if delta.text:
            yield delta.text
        if delta.finish_reason:
            trace.usage = trace.usage + Usage(
                client_prompt_tokens=delta.prompt_tokens, client_completion_tokens=delta.completion_tokens
            )
            yield Finished(delta.finish_reason)
