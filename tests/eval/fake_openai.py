"""A fake OpenAI-compatible server for colm-eval: deterministic answers, the `colm` usage, judges.

It runs for real (uvicorn on an ephemeral 127.0.0.1 port, in a thread; see conftest.py), so
the tests go through the official openai SDK and HTTP exactly like a real deployment.

Models it plays:
  any id        answers "<model> answer <turn>: <question start>"; ids containing "strong" add the
                word BEST; "plain" sends no `colm` object (an ordinary server); "broken" answers
                400 (not transient). `colm` bills server tokens by its `colm.strategy` and reports
                `baseline_cost_usd`; `server/<name>` bills every token as server tokens.
  judge         MT-Bench: "Rating: [[8]]"; Arena-Hard: prefers the answer with BEST, else a tie;
                AlpacaEval: picks the output with BEST, else "m" (position bias).
  bad-judge     rambles without any rating or label.
  varied-judge  a verdict that depends on the prompt (a CRC of it): ratings 1-10, labels, m/M,
                and about one in four without a readable verdict.
  small-judge   a vLLM-like small model: /v1/models lists owned_by "local" and a context of
                SMALL_CONTEXT tokens, which it enforces with the stand-in's 400. Alone it rambles;
                given `structured_outputs.regex` it answers with text that fully matches it, as
                a constrained decoder would. `smollm2-local` is the same with the stand-in's
                2048-token context, so the serve tests can be dry-run against this server.
  openai-judge  like `judge`, but enforces SMALL_CONTEXT with OpenAI's 400 and lists no context.
Tokens are words. /v1/colm/strategies lists STRATEGIES (404 when `state.strategies` is off);
/upstream/v1 serves the same as /v1, like the app's embedded stand-in; /plain/v1 serves chat
only (no models, no strategies), like a bare OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SMALL_CONTEXT = 1024
CONTEXT = {"small-judge": SMALL_CONTEXT, "openai-judge": SMALL_CONTEXT, "smollm2-local": 2048}
STRATEGIES = ("guide", "shepherd", "cascade")
STRATEGY_SERVER_TOKENS = {None: 100, "guide": 100, "shepherd": 40, "cascade": 10}
RAMBLE = "Both answers have merit and I would rather not decide."
VERDICT_CANDIDATES = ("[[7]]", "[[B>A]]", "M")


@dataclass
class FakeState:
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_503: dict[str, int] = field(default_factory=dict)
    delay_s: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    strategies: bool = True

    def reset(self) -> None:
        self.requests.clear()
        self.fail_503.clear()
        self.delay_s, self.in_flight, self.max_in_flight, self.strategies = 0.0, 0, 0, True

    def count(self, model: str) -> int:
        return sum(1 for r in self.requests if r["model"] == model)

    def of(self, model: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["model"] == model]


def _judge(system: str, user: str) -> str:
    if "[[rating]]" in system or "[[rating]]" in user:
        return "The answer is helpful and correct. Rating: [[8]]"
    if "[[A>>B]]" in system:
        a, _, b = user.partition("<|The Start of Assistant B's Answer|>")
        if ("BEST" in a) != ("BEST" in b):
            return "My final verdict is: [[A>>B]]" if "BEST" in a else "My final verdict is: [[B>>A]]"
        return "My final verdict is tie: [[A=B]]"
    if "m or M" in user:
        m, _, big_m = user.partition('identifier "M"')
        return "M" if "BEST" in big_m and "BEST" not in m else "m"
    return "I cannot tell."


def _varied(system: str, user: str) -> str:
    h = zlib.crc32(user.encode())
    if h % 4 == 0 and "m or M" not in user:
        return RAMBLE
    if "[[rating]]" in system or "[[rating]]" in user:
        return f"Some strengths, some faults. Rating: [[{h % 10 + 1}]]"
    if "[[A>>B]]" in system:
        return "My final verdict: " + ("[[A>>B]]", "[[A>B]]", "[[A=B]]", "[[B>A]]", "[[B>>A]]")[h % 5]
    if "m or M" in user:  # the instruction alone decides whether there is a verdict, so both orders lack one
        instruction = user.partition("## Model Outputs")[0]
        return RAMBLE if zlib.crc32(instruction.encode()) % 3 == 0 else "mM"[h % 2]
    return RAMBLE


def _constrained(regex: str) -> str:
    """What a constrained decoder could write: the ramble (without "[") and a verdict, or the verdict alone."""
    pattern = re.compile(regex)
    for prefix in (RAMBLE + " ", ""):
        for verdict in VERDICT_CANDIDATES:
            if pattern.fullmatch(prefix + verdict):
                return prefix + verdict
    raise ValueError(f"the fake decoder found nothing matching {regex!r}")


def _answer(model: str, messages: list[dict[str, Any]]) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    text = f"{model} answer {len(users)}: {users[-1][:30]}"
    return text + " BEST" if "strong" in model else text


def _usage(model: str, body: dict[str, Any], prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    if model.startswith("server/"):
        server_in, server_out, client_in, client_out = prompt_tokens, completion_tokens, 0, 0
        baseline = None
    elif model.startswith("colm") and model != "colm-client":
        strategy = (body.get("colm") or {}).get("strategy")
        server = STRATEGY_SERVER_TOKENS[strategy]
        server_in, server_out, client_in, client_out = server, server // 2, prompt_tokens, completion_tokens
        baseline = 0.005
    else:
        server_in, server_out, client_in, client_out = 0, 0, prompt_tokens, completion_tokens
        baseline = None
    cost = server_in * 1e-5  # the fake charges prompt tokens only
    return {"server_prompt_tokens": server_in, "server_completion_tokens": server_out,
            "client_prompt_tokens": client_in, "client_completion_tokens": client_out,
            "cost_usd": cost, "server_tokens": server_in + server_out, "client_tokens": client_in + client_out,
            "baseline_cost_usd": baseline, "saving_usd": None if baseline is None else baseline - cost}


def _error(status: int, message: str, *, kind: str = "invalid_request_error", code: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}},
                        status_code=status, headers=headers)


def _context_error(model: str, prompt_tokens: int, max_tokens: int | None) -> JSONResponse | None:
    limit = CONTEXT.get(model)
    if limit is None or max_tokens is None or prompt_tokens + max_tokens <= limit:
        return None
    if model != "openai-judge":  # the stand-in's wording
        return _error(400, f"max_tokens={max_tokens} plus the prompt's {prompt_tokens} tokens exceeds the context "
                           f"of {limit} tokens", code="context_length_exceeded")
    return _error(400, f"This model's maximum context length is {limit} tokens. However, you requested "
                       f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
                       "completion). Please reduce the length of the messages or completion.",
                  code="context_length_exceeded")


def _reply(body: dict[str, Any]) -> JSONResponse:
    model, messages = body["model"], body["messages"]
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    user = messages[-1]["content"]
    prompt_tokens = sum(len(str(m["content"]).split()) for m in messages)
    if (overflow := _context_error(model, prompt_tokens, body.get("max_tokens"))) is not None:
        return overflow
    regex = (body.get("structured_outputs") or {}).get("regex")
    if regex is not None:
        text = _constrained(regex)
    elif model in ("judge", "openai-judge"):
        text = _judge(system, user)
    elif model in ("bad-judge", "small-judge", "smollm2-local"):
        text = RAMBLE
    elif model == "varied-judge":
        text = _varied(system, user)
    else:
        text = _answer(model, messages)
    words = text.split()
    finish = "stop"
    if body.get("max_tokens") is not None and len(words) > body["max_tokens"]:
        text, finish = " ".join(words[: body["max_tokens"]]), "length"
    completion_tokens = len(text.split())
    resp: dict[str, Any] = {
        "id": f"chatcmpl-fake-{time.monotonic_ns()}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }
    if model != "plain":
        resp["colm"] = {"usage": _usage(model, body, prompt_tokens, completion_tokens)}
    return JSONResponse(resp)


MODEL_CARDS = [
    {"id": "judge", "object": "model", "created": 0, "owned_by": "fake"},
    {"id": "varied-judge", "object": "model", "created": 0, "owned_by": "fake"},
    {"id": "bad-judge", "object": "model", "created": 0, "owned_by": "fake"},
    {"id": "openai-judge", "object": "model", "created": 0, "owned_by": "openai"},
    {"id": "small-judge", "object": "model", "created": 0, "owned_by": "local", "max_model_len": SMALL_CONTEXT},
    {"id": "smollm2-local", "object": "model", "created": 0, "owned_by": "local", "max_model_len": 2048},
]


def build_fake_app(state: FakeState) -> FastAPI:
    app = FastAPI()

    async def models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": MODEL_CARDS})

    @app.get("/v1/colm/strategies")
    async def strategies() -> JSONResponse:
        if not state.strategies:
            return _error(404, "Not Found", kind="not_found_error")
        return JSONResponse({"strategies": [{"name": s, "description": f"the {s} strategy"} for s in STRATEGIES],
                             "default": STRATEGIES[0]})

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        state.requests.append(body)
        model = body["model"]
        if state.fail_503.get(model, 0) > 0:
            state.fail_503[model] -= 1
            return _error(503, "overloaded", kind="service_unavailable_error", headers={"Retry-After": "0"})
        if model == "broken":
            return _error(400, "bad request")
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            if state.delay_s:
                await asyncio.sleep(state.delay_s)
            return _reply(body)
        finally:
            state.in_flight -= 1

    for prefix in ("/v1", "/upstream/v1"):
        app.add_api_route(f"{prefix}/models", models, methods=["GET"])
        app.add_api_route(f"{prefix}/chat/completions", chat, methods=["POST"])
    app.add_api_route("/plain/v1/chat/completions", chat, methods=["POST"])
    return app
