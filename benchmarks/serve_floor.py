"""The Serve floor: what the router's shape costs before any of our code runs.

A Serve app with the router's hops and nothing else: a FastAPI ingress reads the JSON body and
hands it through one deployment handle to a second deployment, which POSTs it to the upstream
over a kept-alive aiohttp session and returns the JSON it got. No validation, fairness,
admission or accounting. `router_overhead.py` measures it after the real app (`--no-floor`
skips it), so the figures show how much of the added latency is Serve's and how much is ours.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from fastapi import FastAPI, Request
from ray import serve
from ray.serve.handle import DeploymentHandle

api = FastAPI()


@serve.deployment(max_ongoing_requests=1024)
class Forward:
    def __init__(self, base_url: str) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._session: aiohttp.ClientSession | None = None

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._session is None:  # opened in the replica's event loop
            self._session = aiohttp.ClientSession()
        async with self._session.post(self._url, json={**body, "model": "stub"}) as resp:
            return await resp.json()


@serve.deployment(max_ongoing_requests=1024)
@serve.ingress(api)
class Ingress:
    def __init__(self, forward: DeploymentHandle) -> None:
        self._forward = forward

    @api.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        return {"object": "list", "data": []}  # what the benchmark polls for readiness

    @api.post("/v1/chat/completions")
    async def chat(self, request: Request) -> dict[str, Any]:
        return await self._forward.chat.remote(await request.json())


def build_floor_app(args: dict[str, str]) -> Any:
    return Ingress.bind(Forward.bind(args["base_url"]))
