"""The collaboration pipeline with injected fakes: no Ray, no engines, no network."""

from __future__ import annotations

import pytest

from colm_serve.collab.context import RequestContext
from colm_serve.collab.pipeline import Collaboration
from colm_serve.collab.selection import AllSelector, LLMSelector
from colm_serve.errors import InvalidRequest
from colm_serve.outcome import Outcome
from colm_serve.protocol import ChatCompletionRequest
from colm_serve.service import default_selectors
from tests.fakes import FakeClient, FakeUpstreams, app_args


def routed(picks: str):
    """Upstream behaviour: the router question gets `picks`, everything else short guidance."""

    def reply(call):
        system = call.messages[0]["content"]
        if "route questions" in system:
            return picks
        if "merge expert notes" in system:
            return "SUMMARY: use the formula"
        return f"guidance from {call.model}"

    return reply


def build(args=None, upstreams=None, client=None):
    args = args or app_args()
    upstreams = upstreams or FakeUpstreams(reply=routed("code, math"))
    client = client or FakeClient()
    selectors = {"llm": LLMSelector(upstreams=upstreams, picker=args.specialist(args.aggregator)), "all": AllSelector()}
    return Collaboration(args=args, upstreams=upstreams, client=client, selectors=selectors), upstreams, client


def request(text="What is 2+2?", **colm) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="colm", messages=[{"role": "user", "content": text}], colm=colm or None)


async def test_full_collaboration_selects_guides_summarizes_and_refines():
    collab, ups, client = build(client=FakeClient(["first draft answer", "a much better and longer revised answer"]))
    out = await collab.run(request(), RequestContext())
    t = out.trace
    assert t.selector == "llm" and t.selected == ["code", "math"] and t.selection_fallback is None
    assert [g.specialist for g in t.rounds[0].guidance] == ["code", "math"]
    assert all(g.text and g.text.startswith("guidance from") for g in t.rounds[0].guidance)
    assert t.rounds[0].summary == "SUMMARY: use the formula"
    assert len(t.rounds) == 2 and t.rounds[1].change > 0.1
    assert out.answer == "a much better and longer revised answer"
    assert t.rounds[-1].stop_reason.startswith("iterations done")
    # selection + 2 guidance + 2 summaries, each 100 prompt + 20 completion tokens
    assert t.usage.server_tokens == 5 * 120
    assert t.usage.client_tokens > 100
    assert t.usage.cost_usd > 0
    guidance_calls = [c for c in ups.calls if "Another assistant" in c.messages[0]["content"]]
    assert {c.max_tokens for c in guidance_calls} == {collab._args.guidance.max_tokens}
    assert "SUMMARY: use the formula" in client.requests[0].messages[-1]["content"]


async def test_only_selected_specialists_are_consulted():
    collab, ups, _ = build()
    await collab.run(request(), RequestContext())
    consulted = {c.model for c in ups.calls if "Another assistant" in c.messages[0]["content"]}
    assert consulted == {"m-code", "m-math"}


async def test_adaptive_stop_ends_refinement_when_the_answer_barely_changes():
    same = "The answer is four because two plus two equals four."
    collab, ups, client = build(client=FakeClient([same, same, same, same]))
    out = await collab.run(request(iterations=3), RequestContext())
    assert len(out.trace.rounds) == 2
    assert out.trace.rounds[1].change == 0.0
    assert out.trace.rounds[1].stop_reason.startswith("converged")
    assert len(client.requests) == 2


async def test_zero_iterations_gives_one_round():
    collab, _, client = build()
    out = await collab.run(request(iterations=0), RequestContext())
    assert len(out.trace.rounds) == 1 and len(client.requests) == 1


async def test_failed_specialist_is_replaced_by_the_next_best():
    ups = FakeUpstreams(reply=routed("math, code"), fail={"MATH"})
    collab, _, _ = build(upstreams=ups)
    out = await collab.run(request(), RequestContext())
    by_name = {g.specialist: g for g in out.trace.rounds[0].guidance}
    assert by_name["math"].error and by_name["math"].replaced_by == "conv"
    assert by_name["conv"].text and by_name["code"].text
    assert out.trace.degraded == []


async def test_every_server_failing_degrades_to_the_client_alone():
    ups = FakeUpstreams(reply=routed("math, code"), fail={"MATH", "CODE", "CONV", "EYE"})
    collab, _, client = build(upstreams=ups)
    out = await collab.run(request(iterations=0), RequestContext())
    assert out.trace.degraded[0].startswith("client_only")
    assert out.answer.startswith("answer to:")
    assert out.trace.rounds[0].summary is None
    assert "<data" not in client.requests[0].messages[-1]["content"]


async def test_quorum_goes_on_with_the_first_answers_and_cancels_stragglers():
    args = app_args(guidance={"quorum": 1})
    ups = FakeUpstreams(reply=routed("math, code"), delay={"CODE": 30})
    collab, _, _ = build(args=args, upstreams=ups)
    out = await collab.run(request(iterations=0), RequestContext())
    by_name = {g.specialist: g for g in out.trace.rounds[0].guidance}
    assert by_name["math"].text and by_name["code"].text is None
    assert "cancelled" in by_name["code"].error
    assert any("CODE" in key for key in ups.cancelled)


async def test_guidance_deadline_goes_on_with_what_arrived():
    args = app_args(guidance={"deadline_s": 0.3})
    ups = FakeUpstreams(reply=routed("math, code"), delay={"CODE": 30})
    collab, _, _ = build(args=args, upstreams=ups)
    out = await collab.run(request(iterations=0), RequestContext())
    assert out.trace.latency_s["guidance"] < 5
    assert [g.specialist for g in out.trace.rounds[0].guidance if g.text] == ["math"]


async def test_multi_turn_history_reaches_specialists_and_client():
    collab, ups, client = build()
    req = ChatCompletionRequest(
        model="colm",
        messages=[
            {"role": "user", "content": "Write a poem about the sea."},
            {"role": "assistant", "content": "Waves roll in, waves roll out."},
            {"role": "user", "content": "Now make it rhyme about MOUNTAINS."},
        ],
    )
    await collab.run(req, RequestContext())
    guidance = [c for c in ups.calls if "Another assistant" in c.messages[0]["content"]]
    assert all(any(m.get("content") == "Waves roll in, waves roll out." for m in c.messages) for c in guidance)
    assert client.requests[0].messages[1]["content"] == "Write a poem about the sea."
    assert "MOUNTAINS" in client.requests[0].messages[-1]["content"]


async def test_images_go_only_to_vision_specialists():
    collab, ups, client = build(upstreams=FakeUpstreams(reply=routed("math, code")))
    req = ChatCompletionRequest(
        model="colm",
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ]}],
    )
    out = await collab.run(req, RequestContext())
    assert "eye" in out.trace.selected
    for call in ups.calls:
        has_image = isinstance(call.messages[-1]["content"], list)
        assert has_image == (call.model == "m-eye")
    assert all(isinstance(m["content"], str) for r in client.requests for m in r.messages)


async def test_streaming_yields_the_final_answer_in_pieces():
    collab, _, _ = build(client=FakeClient(["one two three four"]))
    events = [e async for e in collab.events(request(iterations=0), RequestContext(), stream=True)]
    pieces = [e for e in events if isinstance(e, str)]
    assert len(pieces) == 4 and "".join(pieces) == "one two three four"
    assert isinstance(events[-1], Outcome) and events[-1].answer == "one two three four"


async def test_streaming_with_early_stop_still_sends_the_answer_once():
    same = "stable answer text"
    collab, _, _ = build(client=FakeClient([same, same]))
    events = [e async for e in collab.events(request(iterations=3), RequestContext(), stream=True)]
    assert "".join(e for e in events if isinstance(e, str)) == same


@pytest.mark.parametrize(
    ("colm", "param"),
    [({"top_k": 5}, "colm.top_k"), ({"selector": "magic"}, "colm.selector"), ({"iterations": 9}, "colm.iterations")],
)
async def test_bad_options_are_invalid_requests(colm, param):
    collab, _, _ = build()
    with pytest.raises(InvalidRequest) as err:
        await collab.run(request(**colm), RequestContext())
    assert err.value.param == param


async def test_last_message_must_be_from_the_user():
    collab, _, _ = build()
    req = ChatCompletionRequest(model="colm", messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    with pytest.raises(InvalidRequest):
        await collab.run(req, RequestContext())


def test_default_selectors_cover_the_registry():
    args = app_args()
    assert set(default_selectors(args, FakeUpstreams())) == {"all", "llm", "embedding"}


async def test_servers_refusing_admission_is_a_429_not_a_silent_degradation():
    from colm_serve.errors import RateLimited

    class Refusing(FakeUpstreams):
        async def chat(self, call):
            if "Another assistant" in call.messages[0]["content"]:
                raise RateLimited("queue full at server a", retry_after_s=7)
            return await super().chat(call)

    collab, _, _ = build(upstreams=Refusing(reply=routed("math, code")))
    with pytest.raises(RateLimited) as err:
        await collab.run(request(), RequestContext())
    assert err.value.headers["Retry-After"] == "7"
