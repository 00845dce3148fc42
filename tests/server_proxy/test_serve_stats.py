"""Against the real app: the proxies' counters reach /v1/colm/stats in the agreed shape."""

from __future__ import annotations

import httpx
import openai
import pytest

SERVER_FIELDS = {"upstream_calls", "coalesced", "cache_hits", "retries", "server_tokens", "cost_usd",
                 "queue_depth", "in_flight", "max_concurrency", "breaker"}


@pytest.mark.serve
async def test_stats_show_every_server_and_grow_with_a_served_call(app_url) -> None:
    async with httpx.AsyncClient(base_url=app_url, timeout=120) as http:
        before = (await http.get("/v1/colm/stats")).json()
        client = openai.AsyncOpenAI(base_url=f"{app_url}/v1", api_key="unused", max_retries=0, timeout=300)
        try:
            reply = await client.chat.completions.create(
                model="server/gpt-conv", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8,
                extra_body={"colm": {"cache": False}},
            )
        finally:
            await client.close()
        after = (await http.get("/v1/colm/stats")).json()

    assert reply.choices[0].message.content is not None
    assert after["servers"], "no server proxies reported"
    for name, server in after["servers"].items():
        assert SERVER_FIELDS <= set(server), name
        assert server["breaker"] in {"closed", "open", "half_open"}
        assert 0 <= server["in_flight"] <= server["max_concurrency"]
    assert after["totals"]["upstream_calls"] > before["totals"]["upstream_calls"]
    assert after["totals"]["server_tokens"] > before["totals"]["server_tokens"]
    assert "unused" not in str(after)  # a presented key never shows up in stats
