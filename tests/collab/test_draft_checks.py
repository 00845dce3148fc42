"""cascade's `examples` check: the draft's code runs against the examples its question shows, in
the sandbox, and a draft that fails them escalates however sure the client model was."""

from __future__ import annotations

from typing import get_args

import pytest

from colm_serve.collab.checks import CHECKS
from colm_serve.collab.checks.examples import ExamplesCheck, examples
from colm_serve.config import DraftCheck
from tests.collab.harness import Servers, answer, build, request
from tests.collab.test_shepherd import OPENING
from tests.fakes import FakeClient, app_args

MBPP_STYLE = ("Please provide a self-contained Python script that solves the following problem in a markdown "
              "code block:\n```\nWrite a function to add two numbers.\nassert add(2, 3) == 5\n```\n\n"
              "Reply with the function in a single ```python fenced code block.")
HUMANEVAL_STYLE = ('Complete the following Python function. Reply in a single ```python fenced code block.\n\n'
                   '```python\ndef double(xs: list) -> list:\n    """ Each item twice.\n'
                   '    >>> double([1, 2])\n    [2, 4]\n    >>> double([])\n    []\n    """\n```')
RIGHT = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"


def test_every_check_the_config_names_is_registered_and_no_other():
    assert set(get_args(DraftCheck)) == set(CHECKS)


def test_the_examples_are_the_questions_asserts_and_docstring_doctests():
    mbpp = examples(MBPP_STYLE)
    assert mbpp.asserts == ("assert add(2, 3) == 5",) and mbpp.doctests == () and mbpp.count == 1
    human = examples(HUMANEVAL_STYLE)
    assert human.asserts == () and human.count == 2
    assert human.doctests[0].endswith("[]")  # the closing quotes are not part of the last example
    assert examples("Reply in a ```python block: what is 2+2?").count == 0  # a fence named in prose opens no block


@pytest.mark.parametrize(("question", "draft", "outcome"), [
    (MBPP_STYLE, RIGHT, "passed"),
    (MBPP_STYLE, WRONG, "failed"),
    (HUMANEVAL_STYLE, "```python\ndef double(xs):\n    return [2 * x for x in xs]\n```", "passed"),
    (HUMANEVAL_STYLE, "```python\ndef double(xs):\n    return xs + xs\n```", "failed"),
    (MBPP_STYLE, "Add them with the + operator.", "failed"),  # no code at all
    ("What is 2+2?", RIGHT, "none"),
])
async def test_a_draft_passes_or_fails_the_examples_it_was_shown(question, draft, outcome):
    verdict = await ExamplesCheck(timeout_s=10).run(question, draft)
    assert verdict.outcome == outcome, verdict.detail


async def test_a_failed_example_is_named_in_the_detail():
    verdict = await ExamplesCheck(timeout_s=10).run(HUMANEVAL_STYLE, "```python\ndef double(xs):\n    return xs\n```")
    assert verdict.outcome == "failed" and "1 of 2 doctest examples failed: Line 2, in examples Failed example: double([1, 2]) Expected: [2, 4] Got: [1, 2]" in verdict.detail, verdict.detail


async def test_a_draft_that_loops_forever_fails_at_the_timeout():
    looping = "```python\ndef add(a, b):\n    while True:\n        pass\n```"
    verdict = await ExamplesCheck(timeout_s=1).run(MBPP_STYLE, looping)
    assert verdict.outcome == "failed" and verdict.detail.startswith("timeout")


async def test_a_confident_draft_that_fails_its_examples_escalates():
    strategies, _ = build(client=FakeClient([WRONG, " the rest."], mean_logprob=-0.01))
    servers = Servers({"prefix": OPENING})
    out, _ = await answer(strategies["cascade"], request(MBPP_STYLE, threshold=-1.0, check="examples"), servers)
    assert servers.kinds() == ["prefix"]
    assert out.trace.check.outcome == "failed" and out.trace.check.examples == 1
    why = out.trace.decisions[0].why
    assert out.trace.decisions[0].choice == "shepherd" and "examples check failed" in why and ">= threshold" in why
    assert out.trace.latency_s["check"] > 0


async def test_a_confident_draft_that_passes_its_examples_stands():
    args = app_args(collaboration={"cascade": {"check": "examples"}})
    strategies, _ = build(args, client=FakeClient([RIGHT], mean_logprob=-0.01))
    servers = Servers()
    out, _ = await answer(strategies["cascade"], request(MBPP_STYLE, threshold=-1.0), servers)
    assert servers.calls == [] and out.answer == RIGHT and out.trace.check.outcome == "passed"


async def test_a_passed_check_does_not_keep_an_unsure_draft():
    strategies, _ = build(client=FakeClient([RIGHT, " the rest."], mean_logprob=-3.0))
    servers = Servers({"prefix": OPENING})
    out, _ = await answer(strategies["cascade"], request(MBPP_STYLE, threshold=-1.0, check="examples"), servers)
    assert servers.kinds() == ["prefix"] and out.trace.check.outcome == "passed"


async def test_without_a_check_nothing_runs_and_the_trace_has_none():
    strategies, _ = build(client=FakeClient([WRONG], mean_logprob=-0.01))
    out, _ = await answer(strategies["cascade"], request(MBPP_STYLE, threshold=-1.0), Servers())
    assert out.answer == WRONG and out.trace.check is None and "check" not in out.trace.latency_s


def test_the_check_option_belongs_to_cascade_alone():
    from colm_serve.errors import InvalidRequest
    strategies, _ = build()
    with pytest.raises(InvalidRequest, match="colm.check does not apply to strategy 'guide'"):
        strategies["guide"].check(request(check="examples").options())
