"""A minimal OpenAI-compatible upstream for benchmarks: it waits `--latency-s`, then answers.

Raw ASGI on uvicorn with uvloop, in its own process, so it costs the machine as little as an
upstream can and the benchmark measures the router, not the stub. It answers
/v1/chat/completions (JSON, or SSE with usage when `stream` is set) and /v1/models.

    python -m benchmarks.stub_upstream --port 9101 --latency-s 1.0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

REPLY = "ok"


def completion(model: str) -> bytes:
    return json.dumps({
        "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
    }).encode()


def chunks(model: str) -> list[bytes]:
    base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    events = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": REPLY}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}},
    ]
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


def make_app(latency_s: float):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"].endswith("/models"):
            await _send(send, 200, b'{"object":"list","data":[{"id":"stub","object":"model"}]}', "application/json")
            return
        request = json.loads(body or b"{}")
        if latency_s:
            await asyncio.sleep(latency_s)
        model = request.get("model", "stub")
        if request.get("stream"):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            for piece in chunks(model):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        await _send(send, 200, completion(model), "application/json")

    return app


async def _send(send, status: int, body: bytes, content_type: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-s", type=float, default=0.0)
    args = parser.parse_args()
    uvicorn.run(make_app(args.latency_s), host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False, backlog=4096, timeout_keep_alive=120)


if __name__ == "__main__":
    main()
