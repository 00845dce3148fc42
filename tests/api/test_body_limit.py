"""The body limit holds whether or not the client declares a length (chunked bodies)."""

from __future__ import annotations

import json

import httpx
from fastapi import FastAPI, Request

from colm_serve.api.body_limit import BodyLimit
from colm_serve.errors import install_error_handlers

LIMIT = 2048


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=LIMIT)

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"bytes": len(await request.body())}

    return app


def _chunks(total: int, size: int = 512):
    async def gen():
        sent = 0
        while sent < total:
            piece = min(size, total - sent)
            sent += piece
            yield b"x" * piece

    return gen()


async def _post(content, headers=None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t") as http:
        return await http.post("/echo", content=content, headers=headers)


async def test_a_chunked_oversized_body_gets_413():
    resp = await _post(_chunks(LIMIT * 4))
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "body_too_large"


async def test_a_chunked_body_within_the_limit_reaches_the_app_whole():
    resp = await _post(_chunks(LIMIT - 10))
    assert resp.status_code == 200 and resp.json() == {"bytes": LIMIT - 10}


async def test_a_declared_oversized_length_gets_413_and_a_small_one_passes():
    assert (await _post(b"x" * (LIMIT + 1))).status_code == 413
    assert (await _post(json.dumps({"a": 1}).encode())).json() == {"bytes": 8}


def test_a_real_chunked_request_over_a_socket_gets_413():
    """Over real HTTP (uvicorn), Transfer-Encoding: chunked, no Content-Length."""
    from tests.reliability.conftest import ServedApp

    with ServedApp(_app()) as served, httpx.Client() as http:
        resp = http.post(f"{served.url}/echo", content=iter([b"y" * 1024] * 8))
        assert resp.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in resp.request.headers
        assert resp.status_code == 413
        assert http.post(f"{served.url}/echo", content=iter([b"y" * 100])).json() == {"bytes": 100}
