"""One turn through the openai SDK against the fake CoLM server: usage, TTFT, error types."""

from __future__ import annotations

import pytest

from loadtest._client import TurnError, make_client, run_turn
from tests.loadtest.fake_colm_server import PLAIN_MODEL, RATE_LIMITED_KEY

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.mark.parametrize("stream", [False, True])
def test_turn_reads_colm_usage(fake_colm, stream):
    client = make_client(base_url=fake_colm.url, api_key="sk-app-1", timeout_s=10)
    result = run_turn(client, model="colm", messages=QUESTION, max_tokens=8, stream=stream,
                      colm={"iterations": 0, "cache": False})
    assert result.answer.startswith("Here is")
    assert result.usage.server_tokens > 0 and result.usage.client_tokens > 0 and result.usage.cost_usd > 0
    assert result.e2e_s >= 0.3  # the fake's colm delay
    assert (result.ttft_s is not None) == stream
    if stream:
        assert 0 < result.ttft_s <= result.e2e_s
        assert result.completion_tokens == len(result.answer.split())
    sent = fake_colm.state.requests[-1]
    assert sent["key"] == "sk-app-1" and sent["max_tokens"] == 8 and sent.get("stream", False) is stream
    assert sent["colm"]["iterations"] == 0 and sent["colm"]["cache"] is False


def test_turn_without_colm_options_sends_no_colm_object(fake_colm):
    client = make_client(base_url=fake_colm.url, api_key="", timeout_s=10)
    result = run_turn(client, model="server/gpt-conv", messages=QUESTION, max_tokens=4, stream=False, colm={})
    assert result.usage.client_tokens == 0 and result.usage.server_tokens > 0
    assert "colm" not in fake_colm.state.requests[-1]


@pytest.mark.parametrize(
    ("model", "key", "short"),
    [
        ("colm", RATE_LIMITED_KEY, "RateLimitError 429 rate_limit_exceeded"),
        ("server/nope", "sk-app", "NotFoundError 404 not_found_error"),
        (PLAIN_MODEL, "sk-app", "ProtocolError missing_colm_usage"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_turn_errors_are_typed(fake_colm, model, key, short, stream):
    client = make_client(base_url=fake_colm.url, api_key=key, timeout_s=10)
    with pytest.raises(TurnError) as info:
        run_turn(client, model=model, messages=QUESTION, max_tokens=4, stream=stream, colm={})
    assert info.value.short() == short
    assert info.value.e2e_s >= 0 and info.value.message
    # The server still answers afterwards.
    ok = make_client(base_url=fake_colm.url, api_key="sk-app", timeout_s=10)
    assert run_turn(ok, model="colm-client", messages=QUESTION, max_tokens=4, stream=False, colm={}).answer


def test_connection_refused_is_typed():
    client = make_client(base_url="http://127.0.0.1:9", api_key="", timeout_s=5)
    with pytest.raises(TurnError) as info:
        run_turn(client, model="colm", messages=QUESTION, max_tokens=4, stream=False, colm={})
    assert info.value.kind == "APIConnectionError" and info.value.status is None
