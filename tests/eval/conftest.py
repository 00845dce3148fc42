"""A fake OpenAI-compatible server for colm-eval: deterministic answers, the `colm` usage, a judge.

It runs for real (uvicorn on an ephemeral 127.0.0.1 port, in a thread), so the tests go
through the official openai SDK and HTTP exactly like a real deployment.

Models it plays:
  any id            answers "<model> answer <turn>: <question start>"; ids containing "strong"
                    add the word BEST; "plain" sends no `colm` object (an ordinary server);
                    "broken" answers 400 (not transient).
  judge             MT-Bench: "Rating: [[8]]"; Arena-Hard: prefers the answer with BEST, else a
                    tie; AlpacaEval: picks the output with BEST, else "m" (position bias).
  bad-judge         rambles without any rating or label.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class FakeState:
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_503: dict[str, int] = field(default_factory=dict)
    delay_s: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0

    def reset(self) -> None:
        self.requests.clear()
        self.fail_503.clear()
        self.delay_s, self.in_flight, self.max_in_flight = 0.0, 0, 0

    def count(self, model: str) -> int:
        return sum(1 for r in self.requests if r["model"] == model)


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


def _answer(model: str, messages: list[dict[str, Any]]) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    text = f"{model} answer {len(users)}: {users[-1][:30]}"
    return text + " BEST" if "strong" in model else text


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    model, messages = body["model"], body["messages"]
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    user = messages[-1]["content"]
    if model == "judge":
        text = _judge(system, user)
    elif model == "bad-judge":
        text = "Both answers have merit and I would rather not decide."
    else:
        text = _answer(model, messages)
    prompt_tokens = sum(len(str(m["content"]).split()) for m in messages)
    completion_tokens = len(text.split())
    resp: dict[str, Any] = {
        "id": f"chatcmpl-fake-{time.monotonic_ns()}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }
    if model != "plain":
        server = 100 if model.startswith("colm") and model != "colm-client" else 0
        resp["colm"] = {"usage": {
            "server_prompt_tokens": server, "server_completion_tokens": server // 2,
            "client_prompt_tokens": prompt_tokens, "client_completion_tokens": completion_tokens,
            "cost_usd": server * 1e-5, "server_tokens": server + server // 2,
            "client_tokens": prompt_tokens + completion_tokens}}
    return resp


def build_fake_app(state: FakeState) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        state.requests.append(body)
        model = body["model"]
        if state.fail_503.get(model, 0) > 0:
            state.fail_503[model] -= 1
            return JSONResponse({"error": {"message": "overloaded", "type": "service_unavailable_error",
                                           "param": None, "code": None}}, status_code=503, headers={"Retry-After": "0"})
        if model == "broken":
            return JSONResponse({"error": {"message": "bad request", "type": "invalid_request_error",
                                           "param": "messages", "code": None}}, status_code=400)
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            if state.delay_s:
                await asyncio.sleep(state.delay_s)
            return JSONResponse(_reply(body))
        finally:
            state.in_flight -= 1

    return app


@dataclass
class FakeServer:
    url: str
    state: FakeState


@pytest.fixture(scope="session")
def _fake_server():
    state = FakeState()
    server = uvicorn.Server(uvicorn.Config(build_fake_app(state), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake OpenAI server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield FakeServer(url=f"http://127.0.0.1:{port}/v1", state=state)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def fake(_fake_server: FakeServer) -> FakeServer:
    """The shared fake server with a clean request log and no injected failures."""
    _fake_server.state.reset()
    return _fake_server
