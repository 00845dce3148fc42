"""The unary transport against a real HTTP upstream: answers, and each failure as the SDK's error class."""

from __future__ import annotations

import socket

import openai
import pytest

from colm_serve.server_proxy.retry import classify
from colm_serve.server_proxy.transport import JsonPost, status_error
from tests.upstream_sim import Fault, UpstreamSim

BODY = {"model": "sim-model", "messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 8}


async def failure_at(base_url: str, expected: type[Exception]) -> Exception:
    """One POST through a fresh transport, closed after; the error it raised."""
    post = JsonPost(base_url, "EMPTY")
    try:
        with pytest.raises(expected) as caught:
            await post.post("/chat/completions", BODY, timeout_s=5)
    finally:
        await post.aclose()
    return caught.value


async def answer_at(base_url: str) -> dict:
    """One POST through a fresh transport, closed after; the answer it got."""
    post = JsonPost(base_url, "EMPTY")
    try:
        return await post.post("/chat/completions", BODY, timeout_s=5)
    finally:
        await post.aclose()


@pytest.fixture
async def post(sim):
    made = JsonPost(sim.url, "EMPTY")
    yield made
    await made.aclose()


async def test_an_answer_comes_back_as_the_json_sent_and_the_body_goes_out_as_given(sim, post) -> None:
    answer = await post.post("/chat/completions", {**BODY, "ignore_eos": True}, timeout_s=5)
    assert answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] > 0
    seen = sim.stats.log[-1].body
    assert seen["ignore_eos"] is True and seen["messages"] == BODY["messages"]


async def test_a_429_is_the_sdks_rate_limit_error_with_its_retry_after(sim, post) -> None:
    sim.set_faults(script=[Fault.error(429, retry_after="3", message="slow down")])
    with pytest.raises(openai.RateLimitError) as caught:
        await post.post("/chat/completions", BODY, timeout_s=5)
    failure = classify(caught.value)
    assert failure.retryable and failure.status == 429 and failure.retry_after_s == 3.0
    assert "slow down" in failure.message  # the upstream's `error.message`, not the raw JSON


async def test_a_5xx_is_an_internal_server_error_the_breaker_counts(sim, post) -> None:
    sim.set_faults(script=[Fault.error(503)])
    with pytest.raises(openai.InternalServerError) as caught:
        await post.post("/chat/completions", BODY, timeout_s=5)
    assert classify(caught.value).verdict == "failure"


async def test_a_wrong_key_is_an_authentication_error() -> None:
    with UpstreamSim(api_key="right") as locked:
        wrong, right = JsonPost(locked.url, "wrong"), JsonPost(locked.url, "right")
        try:
            with pytest.raises(openai.AuthenticationError):
                await wrong.post("/chat/completions", BODY, timeout_s=5)
            assert (await right.post("/chat/completions", BODY, timeout_s=5))["choices"]
        finally:
            await wrong.aclose()
            await right.aclose()


async def test_an_upstream_that_hangs_is_a_timeout(sim, post) -> None:
    sim.set_faults(script=[Fault.hang(hang_s=5)])
    with pytest.raises(openai.APITimeoutError):
        await post.post("/chat/completions", BODY, timeout_s=0.3)


async def test_a_dropped_connection_and_a_closed_port_are_connection_errors(sim, post) -> None:
    sim.set_faults(script=[Fault.drop(after_chunks=0)])
    with pytest.raises(openai.APIConnectionError):
        await post.post("/chat/completions", BODY, timeout_s=5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: the connection is refused
        refused = await failure_at(f"http://127.0.0.1:{port}/v1", openai.APIConnectionError)
    assert not isinstance(refused, openai.APITimeoutError)


@pytest.mark.parametrize("answer", [b"[1, 2]", b"<html>not json</html>"])
async def test_a_2xx_that_is_not_a_json_object_is_a_validation_error(answer: bytes) -> None:
    from aiohttp import web

    async def answer_with(_: web.Request) -> web.Response:
        return web.Response(body=answer, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer_with)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        invalid = await failure_at(f"http://127.0.0.1:{port}/v1", openai.APIResponseValidationError)
    finally:
        await runner.cleanup()
    assert invalid.status_code == 200 and classify(invalid).retryable is False


def test_a_non_json_error_body_keeps_its_text_and_an_unknown_4xx_is_a_plain_status_error() -> None:
    err = status_error("http://up/v1/chat/completions", 418, {}, b"I am a teapot")
    assert type(err) is openai.APIStatusError and err.status_code == 418 and err.body == "I am a teapot"
    assert classify(err).retryable is False


async def test_close_ends_the_session(sim) -> None:
    post = JsonPost(sim.url, "EMPTY")
    await post.post("/chat/completions", BODY, timeout_s=5)
    assert not post.closed
    await post.aclose()
    assert post.closed


async def test_the_proxy_sends_the_sdks_account_headers_on_unary_calls(sim, monkeypatch) -> None:
    from colm_serve.server_proxy.proxy import ServerProxy
    from tests.server_proxy.conftest import make_call, server_config

    monkeypatch.setenv("OPENAI_ORG_ID", "org-test")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-test")
    proxy = ServerProxy(server_config(sim))
    try:
        await proxy.chat(make_call())
    finally:
        await proxy.aclose()
    headers = sim.stats.log[-1].headers
    assert headers["openai-organization"] == "org-test" and headers["openai-project"] == "proj-test"
    assert headers["authorization"] == "Bearer EMPTY" and headers["user-agent"].startswith("colm-serve/")


@pytest.fixture
async def forward_proxy(sim):
    """A real HTTP forward proxy on a free port: it records each request's target and passes it
    on to the sim, whatever host the target names."""
    import aiohttp
    from aiohttp import web

    seen: list[str] = []

    async def forward(request: web.Request) -> web.Response:
        seen.append(str(request.url))
        async with aiohttp.ClientSession() as session:
            async with session.post(sim.url + "/" + request.path.split("/v1/", 1)[1], data=await request.read(),
                                    headers={"Authorization": request.headers["Authorization"],
                                             "Content-Type": "application/json"}) as resp:
                return web.Response(body=await resp.read(), status=resp.status, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", seen
    await runner.cleanup()


async def test_http_proxy_from_the_environment_carries_the_call(forward_proxy, monkeypatch) -> None:
    url, seen = forward_proxy
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", url)
    # A host no resolver knows: only the proxy can have carried the call there.
    answer = await answer_at("http://upstream.invalid/v1")
    assert answer["object"] == "chat.completion"
    assert seen == ["http://upstream.invalid/v1/chat/completions"]


async def test_no_proxy_sends_the_call_straight_to_the_upstream(sim, forward_proxy, monkeypatch) -> None:
    url, seen = forward_proxy
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    answer = await answer_at(sim.url)
    assert answer["object"] == "chat.completion" and seen == [] and sim.stats.log
