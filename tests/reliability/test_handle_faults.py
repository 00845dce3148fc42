"""A replica that dies under a request reaches the client as a 503 it may retry, not a 500."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError

from colm_serve.client_model.handle import HandleClientLM
from colm_serve.client_model.types import GenerationRequest
from colm_serve.errors import ServiceUnavailable, UpstreamError
from colm_serve.server_proxy.types import UpstreamCall
from colm_serve.server_proxy.handle import HandleUpstreams

REQ = GenerationRequest(messages=[{"role": "user", "content": "hi"}])
CALL = UpstreamCall(server="local", model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=8)


def _dying_handle(exc: Exception) -> SimpleNamespace:
    """Stands in for a DeploymentHandle whose replica dies (unary and streaming calls)."""

    async def unary(*_):
        raise exc

    async def stream(*_):
        raise exc
        yield  # makes this an async generator, like a streaming handle call

    method = SimpleNamespace(remote=unary)
    stream_method = SimpleNamespace(remote=stream)
    return SimpleNamespace(
        generate=method, chat=method,
        options=lambda **_: SimpleNamespace(stream=stream_method, chat_stream=stream_method),
    )


@pytest.mark.parametrize("exc", [ActorDiedError(), ActorUnavailableError("replica unreachable", None)])
async def test_a_dead_replica_is_a_retryable_503(exc):
    handle = _dying_handle(exc)
    calls = [
        HandleClientLM(handle).generate(REQ),
        anext(HandleClientLM(handle).stream(REQ)),
        HandleUpstreams({"local": handle}).chat(CALL),
        anext(HandleUpstreams({"local": handle}).chat_stream(CALL)),
    ]
    for call in calls:
        with pytest.raises(ServiceUnavailable) as err:
            await call
        assert err.value.status == 503 and err.value.code == "replica_failed"
        assert err.value.headers["Retry-After"]


async def test_domain_errors_from_a_replica_pass_through_unchanged():
    handle = _dying_handle(UpstreamError("upstream answered 500"))
    with pytest.raises(UpstreamError):
        await HandleUpstreams({"local": handle}).chat(CALL)
