"""The client model as an OpenAI chat server, written once for `colm-client` and the embedded
stand-in: a Chat Completions request in, `chat.completion` bodies (or `chat.completion.chunk`
bodies) out, shaped like vLLM's own OpenAI server answers them: n choices, logprobs, sampling
penalties and logit_bias, response_format and tool calls (both under structured outputs).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

from colm_serve import telemetry
from colm_serve.client_model import tools
from colm_serve.client_model.chat import bill, to_generation
from colm_serve.client_model.types import ClientLM, Generation, GenerationRequest, Sample, TokenLogprob
from colm_serve.errors import InvalidRequest
from colm_serve.outcome import Chunk, Completion
from colm_serve.protocol.openai import ChatCompletionRequest
from colm_serve.protocol.trace import Trace

PIECE_CHARS = 16  # a replayed answer's text and tool-call arguments go out in pieces this long


async def completion_events(
    client: ClientLM,
    req: ChatCompletionRequest,
    *,
    model_name: str,
    request_id: str,
    trace: Trace,
    stream: bool,
    label: str = "anonymous",
    weight: float = 1.0,
    deadline: float | None = None,
    default_max_tokens: int | None = None,
    structured: dict[str, Any] | None = None,
) -> AsyncIterator[Chunk | Completion]:
    """The answer to `req`: one Completion, or (stream) Chunks from the role chunk to the usage
    chunk (`choices: []`, always sent: the API drops it unless the client asked for it). The client
    tokens are billed on `trace.usage`. `structured` (vLLM's structured outputs) overrides
    `req.response_format`; `label`, `weight` and `deadline` place the request in the engine's
    fair queue."""
    constraint = structured or (req.response_format.structured() if req.response_format else None)
    turn = tools.tool_turn(req, content_schema=_content_schema(constraint) if req.wants_tools() else None)
    gen = to_generation(req, model_name=model_name, request_id=request_id,
                        structured=turn.structured() if turn else constraint)
    if turn:
        gen.messages = tools.with_prompt(gen.messages, turn.prompt)
    gen.client, gen.weight, gen.deadline = label, weight, deadline
    gen.trace_context = telemetry.inject() or None
    if gen.max_tokens is None:
        gen.max_tokens = default_max_tokens
    writer = Writer(model=model_name)
    if stream and turn is None:
        async with aclosing(_streamed(client, gen, trace, writer)) as chunks:
            async for body in chunks:
                yield Chunk(body)
        return
    out = await client.generate(gen)
    bill(trace, out)
    choices = [_choice(sample, turn=turn, logprobs=gen.top_logprobs is not None) for sample in out.all_samples()]
    if not stream:
        yield Completion(writer.completion(choices, usage(out)))
        return
    # A tool turn is one JSON object written under a grammar; turning its pieces into OpenAI's
    # tool-call deltas as they come would mean parsing partial JSON. It is written whole, then
    # sent as the deltas OpenAI streams (name first, then the arguments in pieces).
    for body in writer.replay(choices, usage(out)):
        yield Chunk(body)


def usage(out: Generation) -> dict[str, Any]:
    counts = {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
              "total_tokens": out.prompt_tokens + out.completion_tokens}
    if out.cached_prompt_tokens:
        counts["prompt_tokens_details"] = {"cached_tokens": out.cached_prompt_tokens}
    return counts


def openai_logprobs(tokens: list[TokenLogprob] | None) -> dict[str, Any]:
    """Tokens in OpenAI's `logprobs` object."""
    return {"content": [t.model_dump() for t in tokens or ()]}


class Writer:
    """OpenAI bodies of one response: one id and creation time for all of them."""

    def __init__(self, *, model: str) -> None:
        self.id, self.created, self.model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model

    def completion(self, choices: list[dict[str, Any]], counts: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": choices, "usage": counts}

    def chunk(self, index: int, delta: dict[str, Any], *, finish_reason: str | None = None,
              logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [choice]}

    def usage_chunk(self, counts: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": counts}

    def replay(self, choices: list[dict[str, Any]], counts: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Whole choices as the chunks that stream them, then the usage chunk."""
        for choice in choices:
            i, message = choice["index"], choice["message"]
            yield self.chunk(i, {"role": "assistant", "content": ""})
            for piece in _pieces(message["content"] or ""):
                yield self.chunk(i, {"content": piece})
            for k, call in enumerate(message.get("tool_calls") or ()):
                function = call["function"]
                yield self.chunk(i, {"tool_calls": [{"index": k, "id": call["id"], "type": "function",
                                                     "function": {"name": function["name"], "arguments": ""}}]})
                for piece in _pieces(function["arguments"]):
                    yield self.chunk(i, {"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
            yield self.chunk(i, {}, finish_reason=choice["finish_reason"], logprobs=choice["logprobs"])
        yield self.usage_chunk(counts)


async def _streamed(client: ClientLM, gen: GenerationRequest, trace: Trace, writer: Writer) -> AsyncIterator[dict]:
    """Free text as the engine writes it: a role chunk per choice, the pieces (with their
    tokens' logprobs when asked), each choice's finish, then the usage of all of them."""
    for i in range(gen.n):
        yield writer.chunk(i, {"role": "assistant", "content": ""})
    asked = gen.top_logprobs is not None
    tally = Generation(text="", prompt_tokens=0, completion_tokens=0)
    async with aclosing(client.stream(gen)) as deltas:  # closing it stops the engine at once
        async for delta in deltas:
            if delta.finish_reason:
                tally.prompt_tokens = max(tally.prompt_tokens, delta.prompt_tokens)
                tally.cached_prompt_tokens = max(tally.cached_prompt_tokens, delta.cached_prompt_tokens)
                tally.completion_tokens += delta.completion_tokens
            if delta.text or delta.finish_reason or delta.logprobs:
                yield writer.chunk(delta.index, {"content": delta.text} if delta.text or delta.logprobs else {},
                                   finish_reason=delta.finish_reason,
                                   logprobs=openai_logprobs(delta.logprobs) if asked else None)
    bill(trace, tally)
    yield writer.usage_chunk(usage(tally))


def _choice(sample: Sample, *, turn: tools.ToolTurn | None, logprobs: bool) -> dict[str, Any]:
    content, calls, finish = sample.text, [], sample.finish_reason
    if turn is not None:
        try:
            content, calls = tools.read(sample.text)
        except (ValueError, KeyError, TypeError):  # cut short (length, a stop sequence): the text as written
            content, calls = sample.text, []
        if calls:
            finish = "tool_calls"
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {"index": sample.index, "message": message,
            "logprobs": openai_logprobs(sample.logprobs) if logprobs else None, "finish_reason": finish or "stop"}


def _content_schema(constraint: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a direct answer beside tool calls must be: the response_format's schema, or None (text)."""
    if constraint is None:
        return None
    if "json" in constraint:
        schema = constraint["json"]
        return json.loads(schema) if isinstance(schema, str) else schema
    if constraint.get("json_object"):
        return {"type": "object"}
    raise InvalidRequest("tools cannot be combined with a regex, choice or grammar constraint",
                         param="structured_outputs")


def _pieces(text: str) -> Iterator[str]:
    for start in range(0, len(text), PIECE_CHARS):
        yield text[start:start + PIECE_CHARS]
