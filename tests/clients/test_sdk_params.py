"""Wire shapes of the sampling parameters, through the raw openai SDK against the real app.

A smoke test of what SDK users read back: logprobs with top_logprobs from a server model id,
`n` choices from the client model id, JSON mode on `colm`, and `n` refused on `colm` by name.
"""

from __future__ import annotations

import json

import openai
import pytest

pytestmark = pytest.mark.serve

SERVER = "server/gpt-conv"
CLIENT = "colm-client"


@pytest.fixture
def client(app_url):
    return openai.OpenAI(base_url=f"{app_url}/v1", api_key="x", max_retries=0, timeout=120)


def test_server_model_returns_logprobs_with_top_logprobs(client):
    resp = client.chat.completions.create(
        model=SERVER, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0,
        logprobs=True, top_logprobs=2,
    )
    choice = resp.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content, choice
    assert 1 <= len(choice.logprobs.content) <= resp.usage.completion_tokens
    for token in choice.logprobs.content:
        assert isinstance(token.token, str) and token.logprob <= 0, token
        assert len(token.top_logprobs) == 2, token
        assert all(isinstance(alt.token, str) and alt.logprob <= 0 for alt in token.top_logprobs), token
        assert token.top_logprobs[0].logprob >= token.top_logprobs[1].logprob, token
    # greedy decoding: the chosen token is the most likely one
    assert choice.logprobs.content[0].logprob == pytest.approx(choice.logprobs.content[0].top_logprobs[0].logprob, abs=1e-3)


def test_client_model_returns_n_choices(client):
    resp = client.chat.completions.create(
        model=CLIENT, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12, n=2, temperature=1.0, seed=3,
    )
    assert sorted(c.index for c in resp.choices) == [0, 1], resp.choices
    assert all(c.message.content and c.message.content.strip() for c in resp.choices), resp.choices
    assert all(c.finish_reason in ("stop", "length") for c in resp.choices), resp.choices
    assert resp.usage.completion_tokens >= 2


def test_colm_writes_json_that_fits_the_apps_schema(client):
    """Valid by construction: the client model writes the answer under the schema. (Bounded
    strings: under bare `json_object` a 135M model can repeat one key until the cap.)"""
    schema = {"type": "object", "additionalProperties": False, "required": ["name", "colour"],
              "properties": {"name": {"type": "string", "maxLength": 24}, "colour": {"type": "string", "maxLength": 24}}}
    resp = client.chat.completions.create(
        model="colm",
        messages=[{"role": "user", "content": "Describe a cat as a JSON object with the keys name and colour."}],
        max_tokens=96, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "cat", "schema": schema, "strict": True}},
    )
    content = resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "stop", f"cut short: {content!r}"
    cat = json.loads(content)
    assert set(cat) == {"name", "colour"} and all(isinstance(v, str) and len(v) <= 24 for v in cat.values())


def test_colm_refuses_n_by_name(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="colm", messages=[{"role": "user", "content": "Hi"}], max_tokens=8, n=2)
    assert err.value.status_code == 400
    assert err.value.body["param"] == "n", err.value.body
