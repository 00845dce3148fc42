"""shepherd over fakes: one server writes the opening, the client model continues it."""

from __future__ import annotations

from tests.collab.harness import Servers, answer, build, content, request, stream
from tests.fakes import FakeClient, app_args

OPENING = "To reverse a list in Python, use"


async def test_one_server_writes_the_opening_and_the_client_continues_it():
    strategies, client = build(client=FakeClient([" slicing: items[::-1]."]))
    servers = Servers({"prefix": OPENING})
    out, run = await answer(strategies["shepherd"], request("How do I reverse a list in Python?", prefix_tokens=24), servers)
    assert servers.kinds() == ["prefix"] and servers.calls[0].max_tokens == 24
    [continuation] = client.requests
    assert continuation.continue_final_message
    assert continuation.messages[-1] == {"role": "assistant", "content": OPENING}
    assert out.answer == OPENING + " slicing: items[::-1]."
    assert out.trace.rounds[0].prefix == OPENING
    assert ("continue", "client") in {(d.step, d.choice) for d in out.trace.decisions}


async def test_prefix_length_defaults_to_config_and_the_bound_holds():
    strategies, _ = build(app_args(collaboration={"shepherd": {"prefix_tokens": 40}}), client=FakeClient(["x " * 300]))
    servers = Servers()  # writes its whole cap
    out, run = await answer(strategies["shepherd"], request(), servers)
    assert servers.calls[0].max_tokens == 40
    bound = strategies["shepherd"].bound(run)
    assert 0 < out.trace.usage.server_tokens <= bound.server_tokens
    assert out.trace.usage.cost_usd <= bound.cost_usd + 1e-12


async def test_a_complete_server_answer_is_not_continued():
    strategies, client = build()
    servers = Servers({"prefix": "Use reversed()."}, finish_reason="stop")
    out, _ = await answer(strategies["shepherd"], request(), servers)
    assert out.answer == "Use reversed()." and client.requests == []
    assert ("continue", "no") in {(d.step, d.choice) for d in out.trace.decisions}


async def test_a_failed_prefix_falls_back_to_the_client_alone_and_says_so():
    strategies, client = build(client=FakeClient(["client answer"]))
    servers = Servers(fail={"Answer the question directly"})
    out, _ = await answer(strategies["shepherd"], request(), servers)
    assert out.answer == "client answer" and out.trace.degraded[0].startswith("client_only")
    assert not client.requests[0].continue_final_message


async def test_the_opening_streams_as_soon_as_it_arrives_then_the_continuation():
    strategies, _ = build(client=FakeClient([" slicing works well."]))
    events = await stream(strategies["shepherd"], request(stream=True), Servers({"prefix": OPENING}))
    pieces = [e for e in events if isinstance(e, str)]
    assert pieces[0] == OPENING and content(events) == OPENING + " slicing works well." and len(pieces) > 2
