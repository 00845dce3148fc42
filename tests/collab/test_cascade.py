"""cascade over fakes: a confident client answer costs nothing; an unsure one escalates."""

from __future__ import annotations

import pytest

from colm_serve.errors import InvalidRequest
from colm_serve.protocol.openai import ChatCompletionRequest
from tests.collab.harness import Servers, answer, build, content, progress, request, stream
from tests.collab.test_shepherd import OPENING
from tests.fakes import FakeClient, app_args


async def test_a_confident_answer_calls_no_server_at_all():
    strategies, client = build(client=FakeClient(["four"], mean_logprob=-0.2))
    servers = Servers()
    out, run = await answer(strategies["cascade"], request(threshold=-0.5), servers)
    assert servers.calls == [] and out.answer == "four"
    assert out.trace.usage.server_tokens == 0 and out.trace.usage.cost_usd == 0
    assert client.requests[0].logprobs
    [decision] = out.trace.decisions
    assert decision.choice == "no" and "-0.200 >= threshold -0.5" in decision.why


async def test_an_unsure_answer_escalates_to_shepherd_with_the_draft_attached():
    strategies, client = build(client=FakeClient(["a shaky draft", " the rest."], mean_logprob=-2.0))
    servers = Servers({"prefix": OPENING})
    out, run = await answer(strategies["cascade"], request(threshold=-1.0), servers)
    assert servers.kinds() == ["prefix"]
    assert "a shaky draft" in str(servers.calls[0].messages[-1]["content"])
    assert out.answer == OPENING + " the rest."
    assert out.trace.decisions[0].choice == "shepherd" and "-2.000 < threshold -1.0" in out.trace.decisions[0].why
    bound = strategies["cascade"].bound(run)
    assert 0 < out.trace.usage.server_tokens <= bound.server_tokens


async def test_an_unsure_answer_can_escalate_to_guide_which_revises_the_draft():
    notes = {"guidance": "KEY FACTS: it is 4.", "critique": "NO CHANGES"}
    strategies, client = build(client=FakeClient(["wrong draft", "notes", "revised answer"], mean_logprob=-3.0))
    servers = Servers(notes)
    out, run = await answer(strategies["cascade"], request(threshold=-1.0, escalate_to="guide", top_k=2), servers)
    assert servers.kinds() == ["guidance", "guidance", "critique"]
    guidance, critique = servers.calls[:2], servers.calls[2]
    assert all("wrong draft" in str(c.messages[-1]["content"]) for c in guidance)
    assert "revised answer" in critique.messages[-1]["content"]
    assert "wrong draft" in client.requests[2].messages[-1]["content"]
    assert out.answer == "revised answer"
    assert out.trace.usage.server_tokens <= strategies["cascade"].bound(run).server_tokens


@pytest.mark.parametrize("target, options", [("shepherd", {}), ("guide", {"top_k": 1, "iterations": 0})])
async def test_with_no_draft_attached_an_escalation_makes_the_calls_the_strategy_alone_makes(target, options):
    """draft_tokens 0: what the servers and the client model are asked is what the strategy asks
    alone, so the unsure draft anchors neither (and a benchmark may share the calls)."""
    replies = {"guidance": "KEY FACTS: it is 4.", "prefix": OPENING}
    alone, alone_client = build(client=FakeClient(["the answer"], mean_logprob=-3.0))
    alone_servers = Servers(replies)
    await answer(alone[target], request(strategy=target, **options), alone_servers)
    cascade, client = build(client=FakeClient(["a wrong draft", "the answer"], mean_logprob=-3.0))
    servers = Servers(replies)
    out, _ = await answer(cascade["cascade"], request(threshold=-1.0, escalate_to=target, draft_tokens=0, **options),
                          servers)
    assert out.trace.decisions[0].choice == target
    assert [c.messages for c in servers.calls] == [c.messages for c in alone_servers.calls]
    assert client.requests[-1].messages == alone_client.requests[-1].messages
    assert "a wrong draft" not in str([c.messages for c in servers.calls] + client.requests[-1].messages)


async def test_draft_tokens_is_refused_where_nothing_escalates():
    strategies, _ = build()
    with pytest.raises(InvalidRequest, match="colm.draft_tokens does not apply to strategy 'shepherd'"):
        await answer(strategies["shepherd"], request(strategy="shepherd", draft_tokens=0), Servers())


async def test_the_default_threshold_comes_from_config():
    args = app_args(collaboration={"cascade": {"threshold": -0.1}})
    strategies, _ = build(args, client=FakeClient(["draft", " more"], mean_logprob=-0.3))
    servers = Servers({"prefix": OPENING})
    await answer(strategies["cascade"], request(), servers)
    assert servers.kinds() == ["prefix"]


async def test_no_confidence_signal_escalates_and_says_why():
    strategies, _ = build(client=FakeClient(["draft", " more"], mean_logprob=None))
    servers = Servers({"prefix": OPENING})
    out, _ = await answer(strategies["cascade"], request(), servers)
    assert servers.kinds() == ["prefix"] and "no log-probabilities" in out.trace.decisions[0].why


async def test_a_budget_that_pays_for_no_escalation_keeps_the_draft():
    strategies, _ = build(client=FakeClient(["draft"], mean_logprob=-5.0))
    servers = Servers()
    out, _ = await answer(strategies["cascade"], request(), servers, max_specialists=0, budget_note="over budget")
    assert servers.calls == [] and out.answer == "draft" and out.trace.degraded == ["client_only: over budget"]


async def test_the_draft_is_progress_and_the_answer_is_content():
    strategies, _ = build(client=FakeClient(["four is the answer"], mean_logprob=-0.1))
    events = await stream(strategies["cascade"], request(stream=True), Servers())
    assert "".join(p.text for p in progress(events, "draft")).strip() == "four is the answer"
    assert progress(events, "escalation") and content(events) == "four is the answer"


@pytest.mark.parametrize("threshold", [0.5, 1])
def test_a_positive_threshold_is_refused(threshold):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        request(threshold=threshold)


# One weak spot (8 unsure tokens) in an otherwise easy draft: the mean hides it, the window does not.
EASY_THEN_GUESS = [-0.01] * 40 + [-3.0] * 8


@pytest.mark.parametrize(("signal", "escalates"), [("mean", False), ("window", True), ("min", True)])
async def test_the_configured_signal_decides_and_every_score_is_traced(signal, escalates):
    strategies, _ = build(client=FakeClient(["draft", " more"], mean_logprob=-0.51, token_logprobs=EASY_THEN_GUESS))
    servers = Servers({"prefix": OPENING})
    out, _ = await answer(strategies["cascade"], request(threshold=-1.0, signal=signal), servers)
    assert (servers.kinds() == ["prefix"]) is escalates
    assert set(out.trace.confidence) == {"mean", "min", "p10", "window", "brevity"}
    assert out.trace.confidence["window"] == -3.0 and out.trace.confidence["min"] == -3.0
    assert out.trace.confidence["mean"] == pytest.approx(sum(EASY_THEN_GUESS) / 48, abs=1e-6)
    assert f"{signal} confidence" in out.trace.decisions[0].why


def capped(max_tokens: int, *, stream: bool = False, **colm) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="colm", messages=[{"role": "user", "content": "What is 2+2?"}], stream=stream,
                                 max_tokens=max_tokens, colm=colm)


async def test_escalating_to_the_server_hands_it_the_question_as_sent():
    strategies, client = build(client=FakeClient(["a guess"], mean_logprob=-2.0))
    servers = Servers()
    req = capped(12, threshold=-1.0, escalate_to="server")
    out, run = await answer(strategies["cascade"], req, servers)
    [call] = servers.calls
    assert call.messages == [m.model_dump(exclude_none=True) for m in req.messages]  # no guidance prompt around it
    assert out.answer == " ".join(["word"] * 12) and len(client.requests) == 1  # the client wrote only the draft
    assert out.trace.decisions[0].choice == "server"
    assert 0 < out.trace.usage.cost_usd <= strategies["cascade"].bound(run).cost_usd


async def test_escalating_to_the_server_streams_its_answer_as_content():
    strategies, _ = build(client=FakeClient(["a guess"], mean_logprob=-2.0))
    events = await stream(strategies["cascade"], capped(5, stream=True, threshold=-1.0, escalate_to="server"),
                          Servers())
    assert content(events).split() == ["word"] * 5
