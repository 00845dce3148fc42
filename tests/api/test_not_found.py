"""A route the router does not serve is an OpenAI-format 404 that names the routes it does serve,
read from the app itself, so the list stays true as routes come and go."""

from __future__ import annotations

import httpx
import openai
import pytest
from fastapi import HTTPException

from colm_serve.accounting.ledger import Ledger
from colm_serve.accounting.stores import MemoryStore
from colm_serve.api.routes import create_api
from colm_serve.collab.selection import AllSelector
from colm_serve.errors import served_routes
from colm_serve.service import RouterService
from tests.fakes import FakeClient, FakeUpstreams, app_args


@pytest.fixture
def app():
    args = app_args()
    service = RouterService(args, ledger=Ledger(args.budgets, MemoryStore()), upstreams=FakeUpstreams(reply=lambda c: "math"),
                            client=FakeClient(), selectors={"llm": AllSelector(), "all": AllSelector()})
    return create_api(service)


@pytest.fixture
async def http(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router") as client:
        yield client


def assert_openai_404(resp: httpx.Response) -> str:
    assert resp.status_code == 404, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    return err["message"]


async def test_legacy_completions_is_an_openai_404_naming_the_routes(app):
    sdk = openai.AsyncOpenAI(base_url="http://router/v1", api_key="none", max_retries=0,
                             http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=app)))
    with pytest.raises(openai.NotFoundError) as err:
        await sdk.completions.create(model="colm", prompt="Say hi")
    message = err.value.body["message"]
    assert message.startswith("POST /v1/completions is not served here; routes: ")
    for route in ("POST /v1/chat/completions", "POST /v1/embeddings", "GET /v1/models"):
        assert route in message
    ok = await sdk.chat.completions.create(model="colm", messages=[{"role": "user", "content": "hi"}])
    assert ok.choices[0].message.content  # the router still serves


async def test_any_unknown_route_names_the_routes(http):
    message = assert_openai_404(await http.get("/v1/nothing-here"))
    assert message.startswith("GET /v1/nothing-here is not served here; routes: ")
    assert "POST /v1/chat/completions" in message and "POST /v1/embeddings" in message


async def test_the_list_is_the_apps_own_routes(app, http):
    @app.post("/v1/brand-new")
    async def brand_new() -> dict:
        return {}

    listed = served_routes(app)
    assert "POST /v1/brand-new" in listed and len(listed) == len(set(listed))
    assert not any(r.endswith(("/docs", "/openapi.json", "/redoc")) for r in listed)  # documentation is not an API route
    assert "POST /v1/brand-new" in assert_openai_404(await http.post("/v1/completions", json={}))


async def test_a_404_a_route_raises_keeps_its_own_message(app, http):
    @app.get("/v1/thing/{name}")
    async def thing(name: str) -> dict:
        raise HTTPException(404, f"no thing called {name}")

    assert assert_openai_404(await http.get("/v1/thing/x")) == "no thing called x"
