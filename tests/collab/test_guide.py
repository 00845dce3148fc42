"""guide over fakes: which steps run where, what they cost, and when the loop stops."""

from __future__ import annotations

import pytest

from colm_serve.collab import prompts
from colm_serve.errors import InvalidRequest, RateLimited
from colm_serve.outcome import Outcome
from colm_serve.protocol.openai import ChatCompletionRequest
from tests.collab.harness import Servers, answer, build, content, first_index, kind, progress, request, stream
from tests.fakes import FakeClient, app_args

NOTES = {"guidance": "KEY FACTS: add. STEPS: 2+2. PITFALLS: none.", "critique": "Say the number as a word too."}


async def test_the_frugal_flow_asks_k_servers_and_one_critic_and_nothing_else():
    strategies, client = build(client=FakeClient(["merged notes", "first draft answer", "a much better and longer revised answer"]))
    servers = Servers(NOTES)
    out, run = await answer(strategies["guide"], request(top_k=2, iterations=1), servers)
    assert servers.kinds() == ["guidance", "guidance", "critique"]
    guidance = [c for c in servers.calls if kind(c) == "guidance"]
    assert {c.max_tokens for c in guidance} == {app_args().guidance.max_tokens}
    assert [c for c in servers.calls if kind(c) == "critique"][0].max_tokens == app_args().refinement.critique_max_tokens
    # the summary ran on the client model: its first request merges the notes
    assert "merge notes" in client.requests[0].messages[0]["content"]
    assert "merged notes" in client.requests[1].messages[-1]["content"]
    assert out.answer == "a much better and longer revised answer"
    t = out.trace
    assert t.strategy == "guide" and t.selected == ["math", "conv"]
    assert t.rounds[0].summary == "merged notes" and t.rounds[1].critique == NOTES["critique"]
    assert t.rounds[-1].stop_reason == "iterations done (1)"
    assert ("summary", "client") in {(d.step, d.choice) for d in t.decisions}
    assert t.usage.server_tokens == sum(b.server_tokens for b in servers.billed) > 0
    assert t.usage.cost_usd == pytest.approx(sum(b.cost_usd for b in servers.billed))


async def test_server_tokens_stay_within_the_stated_bound():
    for options in ({"top_k": 2, "iterations": 1}, {"top_k": 3, "iterations": 2, "summary": "server"}, {"top_k": 1}):
        strategies, _ = build(client=FakeClient(["x " * 300] * 10))
        servers = Servers()  # every server step writes its whole cap
        out, run = await answer(strategies["guide"], request(**options), servers)
        bound = strategies["guide"].bound(run)
        assert 0 < out.trace.usage.server_tokens <= bound.server_tokens, options
        assert out.trace.usage.cost_usd <= bound.cost_usd + 1e-12, options


async def test_summary_on_the_server_is_one_more_call_and_none_is_no_call():
    strategies, client = build()
    servers = Servers(NOTES)
    await answer(strategies["guide"], request(summary="server", iterations=0), servers)
    assert servers.kinds() == ["guidance", "guidance", "summary"]
    strategies, client = build()
    servers = Servers(NOTES)
    await answer(strategies["guide"], request(summary="none", iterations=0), servers)
    assert servers.kinds() == ["guidance", "guidance"] and len(client.requests) == 1
    assert "KEY FACTS" in client.requests[0].messages[-1]["content"]


async def test_the_answer_prompt_ends_on_the_question_not_the_notes():
    # The notes come after the question; a small client answering the notes drops the working
    # the question asked for, so the prompt closes by pointing back to the question's form.
    strategies, client = build()
    await answer(strategies["guide"], request(summary="none", iterations=0), Servers(NOTES))
    content = client.requests[0].messages[-1]["content"]
    assert content.index("KEY FACTS") < content.index(prompts.NOTES_TASK)
    assert content.endswith(prompts.NOTES_TASK)


async def test_no_changes_needed_ends_the_loop_without_a_revision():
    strategies, client = build(client=FakeClient(["notes", "the draft"]))
    servers = Servers({**NOTES, "critique": "NO CHANGES."})
    out, _ = await answer(strategies["guide"], request(iterations=3), servers)
    assert servers.kinds().count("critique") == 1
    assert out.answer == "the draft" and len(client.requests) == 2
    assert out.trace.rounds[-1].stop_reason == "critique: no changes needed"


async def test_a_revision_that_changes_little_stops_before_the_next_critique_is_bought():
    same = "The answer is four because two plus two equals four."
    strategies, client = build(client=FakeClient(["notes", same, same, same]))
    servers = Servers(NOTES)
    out, _ = await answer(strategies["guide"], request(iterations=3), servers)
    assert servers.kinds().count("critique") == 1
    assert out.trace.rounds[-1].change == 0.0 and out.trace.rounds[-1].stop_reason.startswith("converged")
    assert [d.choice for d in out.trace.decisions if d.step == "refine"] == ["stop"]


async def test_zero_iterations_is_guidance_and_one_answer():
    strategies, client = build(client=FakeClient(["notes", "answer"]))
    servers = Servers(NOTES)
    out, _ = await answer(strategies["guide"], request(iterations=0), servers)
    assert servers.kinds() == ["guidance", "guidance"] and out.answer == "answer"


async def test_failed_specialist_is_replaced_by_the_next_best():
    strategies, _ = build()
    servers = Servers(NOTES, fail={"MATH"})
    out, _ = await answer(strategies["guide"], request(iterations=0), servers)
    by_name = {g.specialist: g for g in out.trace.rounds[0].guidance}
    assert by_name["math"].error and by_name["math"].replaced_by == "code"
    assert by_name["conv"].text and by_name["code"].text and out.trace.degraded == []


async def test_every_server_failing_degrades_to_the_client_alone_and_bills_nothing():
    strategies, client = build()
    servers = Servers(NOTES, fail={"MATH", "CODE", "CONV", "EYE"})
    out, _ = await answer(strategies["guide"], request(iterations=2), servers)
    assert out.trace.degraded[0].startswith("client_only")
    assert "critique" not in servers.kinds() and out.answer.startswith("answer to:")
    assert "<data" not in client.requests[0].messages[-1]["content"]
    assert out.trace.usage.server_tokens == 0


async def test_empty_guidance_is_billed_all_the_same():
    strategies, _ = build()
    servers = Servers({"guidance": "   "})
    out, _ = await answer(strategies["guide"], request(iterations=0), servers)
    assert all(g.error == "empty guidance" for g in out.trace.rounds[0].guidance)
    assert out.trace.usage.server_tokens > 0 and out.trace.usage.cost_usd > 0


async def test_quorum_goes_on_with_the_first_answers_and_cancels_stragglers():
    strategies, _ = build(app_args(guidance={"quorum": 1}))
    servers = Servers(NOTES, delay={"CONV": 30})
    out, _ = await answer(strategies["guide"], request(iterations=0), servers)
    by_name = {g.specialist: g for g in out.trace.rounds[0].guidance}
    assert by_name["math"].text and by_name["conv"].text is None and "cancelled" in by_name["conv"].error
    assert any("CONV" in key for key in servers.cancelled)


async def test_guidance_deadline_goes_on_with_what_arrived():
    strategies, _ = build(app_args(guidance={"deadline_s": 0.3}))
    servers = Servers(NOTES, delay={"CONV": 30})
    out, _ = await answer(strategies["guide"], request(iterations=0), servers)
    assert out.trace.latency_s["guidance"] < 5
    assert [g.specialist for g in out.trace.rounds[0].guidance if g.text] == ["math"]


async def test_multi_turn_history_reaches_specialists_and_client():
    strategies, client = build(client=FakeClient(["notes", "answer"]))
    servers = Servers(NOTES)
    req = ChatCompletionRequest(model="colm", colm={"iterations": 0}, messages=[
        {"role": "user", "content": "Write a poem about the sea."},
        {"role": "assistant", "content": "Waves roll in, waves roll out."},
        {"role": "user", "content": "Now make it rhyme about MOUNTAINS."},
    ])
    await answer(strategies["guide"], req, servers)
    assert all(any(m.get("content") == "Waves roll in, waves roll out." for m in c.messages) for c in servers.calls)
    assert client.requests[1].messages[1]["content"] == "Write a poem about the sea."
    assert "MOUNTAINS" in client.requests[1].messages[-1]["content"]


async def test_images_go_only_to_vision_specialists():
    strategies, client = build()
    servers = Servers(NOTES)
    req = ChatCompletionRequest(model="colm", colm={"iterations": 0}, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]}])
    out, _ = await answer(strategies["guide"], req, servers)
    assert "eye" in out.trace.selected
    for call in servers.calls:
        assert isinstance(call.messages[-1]["content"], list) == (call.model == "m-eye")
    assert all(isinstance(m["content"], str) for r in client.requests for m in r.messages)


async def test_streaming_shows_the_work_first_and_sends_the_answer_once_as_content():
    strategies, _ = build(client=FakeClient(["merged notes", "a first draft", "the final revised answer text"]))
    events = await stream(strategies["guide"], request(iterations=1, stream=True), Servers(NOTES))
    assert content(events) == "the final revised answer text"
    assert progress(events)[0].step == "plan" and progress(events, "selection")
    assert {p.step for p in progress(events, "guidance")} == {"guidance:math", "guidance:conv"}
    assert "".join(p.text for p in progress(events, "draft") if p.step == "draft:1").strip() == "a first draft"
    assert progress(events, "review")[0].text.startswith("math: ")
    first_answer = first_index(events, lambda e: isinstance(e, str))
    assert first_index(events, lambda e: str(getattr(e, "step", "")).startswith("guidance:")) < first_answer
    assert isinstance(events[-1], Outcome) and events[-1].answer == "the final revised answer text"


async def test_streaming_with_an_early_stop_sends_the_answer_once():
    strategies, _ = build(client=FakeClient(["notes", "stable answer text"]))
    events = await stream(strategies["guide"], request(iterations=3, stream=True), Servers({**NOTES, "critique": "NO CHANGES"}))
    assert content(events) == "stable answer text"


async def test_progress_off_streams_only_the_answer():
    strategies, _ = build(client=FakeClient(["notes", "one two three"]))
    events = await stream(strategies["guide"], request(iterations=0, progress=False, stream=True), Servers(NOTES))
    assert progress(events) == [] and content(events) == "one two three"
    assert len([e for e in events if isinstance(e, str)]) == 3  # token by token


@pytest.mark.parametrize(("colm", "param"), [
    ({"top_k": 5}, "colm.top_k"), ({"selector": "magic"}, "colm.selector"), ({"iterations": 9}, "colm.iterations"),
    ({"prefix_tokens": 10}, "colm.prefix_tokens"), ({"threshold": -1}, "colm.threshold"),
])
async def test_bad_or_foreign_options_are_invalid_requests(colm, param):
    strategies, _ = build()
    with pytest.raises(InvalidRequest) as err:
        await answer(strategies["guide"], request(**colm), Servers(NOTES))
    assert err.value.param == param


async def test_servers_refusing_admission_is_a_429_not_a_silent_degradation():
    class Refusing(Servers):
        async def chat(self, call):
            if kind(call) == "guidance":
                raise RateLimited("queue full at server a", retry_after_s=7)
            return await super().chat(call)

    strategies, _ = build()
    with pytest.raises(RateLimited) as err:
        await answer(strategies["guide"], request(), Refusing())
    assert err.value.headers["Retry-After"] == "7"


async def test_a_budget_that_pays_for_no_specialist_answers_on_the_client_and_says_why():
    strategies, client = build(client=FakeClient(["answer"]))
    servers = Servers(NOTES)
    out, _ = await answer(strategies["guide"], request(), servers, max_specialists=0, budget_note="cost_usd_per_day spent")
    assert servers.calls == [] and out.answer == "answer"
    assert out.trace.degraded == ["client_only: cost_usd_per_day spent"]
