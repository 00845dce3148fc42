"""Client-model generation, written once: an OpenAI chat request as an engine request
(`to_generation`), the engine's answer as text pieces and a tally (`generation`, the
collaboration's client steps), and its tokens billed (`bill`). `completions` builds the OpenAI
bodies of `colm-client` and the embedded stand-in on these.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from colm_serve.client_model import tools
from colm_serve.client_model.types import ClientLM, Generation, GenerationRequest, Sample, TokenLogprob
from colm_serve.errors import InvalidRequest
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
    """The request's conversation (tool turns as text) and sampling as one engine request."""
    if any(m.has_image() for m in req.messages):
        raise InvalidRequest(f"{model_name} is a text-only model; it cannot take image parts", param="messages")
    if req.top_logprobs is not None and not req.logprobs:
        raise InvalidRequest("top_logprobs needs logprobs set to true", param="top_logprobs")
    temperature = temperature if req.temperature is None else req.temperature
    if req.n > 1 and temperature == 0:
        raise InvalidRequest("n > 1 needs sampling: greedy decoding (temperature 0) writes one answer", param="n")
    return GenerationRequest(
        messages=tools.render(req.messages),
        max_tokens=req.output_limit(),
        temperature=temperature,
        top_p=req.top_p or 1.0,
        stop=req.stop,
        seed=req.seed,
        request_id=request_id,
        min_tokens=req.min_tokens or 0,
        ignore_eos=bool(req.ignore_eos),
        structured=structured,
        n=req.n,
        top_logprobs=(req.top_logprobs or 0) if req.logprobs else None,
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        logit_bias=logit_bias(req.logit_bias),
    )


def logit_bias(value: Any) -> dict[int, float] | None:
    """OpenAI's logit_bias ({"token id": bias in [-100, 100]}) as vLLM takes it."""
    if value is None:
        return None
    try:
        bias = {int(token): float(weight) for token, weight in dict(value).items()}
    except (TypeError, ValueError):
        raise InvalidRequest("logit_bias maps token ids to numbers", param="logit_bias") from None
    if any(token < 0 or not -100 <= weight <= 100 for token, weight in bias.items()):
        raise InvalidRequest("logit_bias takes token ids >= 0 and biases in [-100, 100]", param="logit_bias")
    return bias or None


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
    tokens: list[TokenLogprob] | None = [] if gen.top_logprobs is not None else None
    async with aclosing(client.stream(gen)) as deltas:
        async for delta in deltas:
            if delta.text:
                parts.append(delta.text)
                yield delta.text
            if tokens is not None and delta.logprobs:
                tokens.extend(delta.logprobs)
            if delta.finish_reason:
                text = "".join(parts)
                samples = [] if tokens is None else [Sample(text=text, completion_tokens=delta.completion_tokens,
                                                            finish_reason=delta.finish_reason, logprobs=tokens)]
                yield Generation(text=text, prompt_tokens=delta.prompt_tokens,
                                 completion_tokens=delta.completion_tokens, finish_reason=delta.finish_reason,
                                 cached_prompt_tokens=delta.cached_prompt_tokens, mean_logprob=delta.mean_logprob,
                                 token_logprobs=delta.token_logprobs, samples=samples)


def bill(trace: Trace, out: Generation) -> None:
    """A generation's client tokens, added to the request's usage."""
    spent = Usage(client_prompt_tokens=out.prompt_tokens, client_completion_tokens=out.completion_tokens)
    trace.usage = trace.usage + spent
