"""A restarted router (a new Ledger and store object over the same sqlite file or Redis)
still knows today's spend and reservations; a new day starts from zero."""

from __future__ import annotations

import pytest

from colm_serve.accounting.ledger import Estimate, Ledger
from colm_serve.protocol.usage import Usage
from tests.accounting.conftest import DAY, SHARED_KINDS, Clock

BUDGET = {"server_tokens_per_day": 1000}
EST = Estimate(server_tokens=300)

pytestmark = pytest.mark.parametrize("open_store", SHARED_KINDS, indirect=True)


async def test_a_restarted_ledger_refuses_on_todays_spend_and_resets_tomorrow(open_store):
    clock = Clock()
    before = Ledger(BUDGET, open_store(), clock=clock)
    await before.settle(await before.admit("app", EST), Usage(server_prompt_tokens=250, server_completion_tokens=50))
    await before.settle(await before.admit("app", EST), Usage(server_prompt_tokens=500))
    await before.aclose()  # the settles were write-behind: closing writes them

    after = Ledger(BUDGET, open_store(), clock=clock)
    refused = await after.admit("app", EST)
    assert not refused.ok and refused.reason.startswith("server_tokens_per_day: 800 of 1000 used today;")
    assert (await after.stats())["app"]["server_tokens_today"] == 800
    clock.t += DAY
    assert (await after.admit("app", EST)).ok
    row = (await after.stats())["app"]
    assert (row["requests"], row["server_tokens"], row["server_tokens_today"]) == (2, 800, 0)
    await after.aclose()


async def test_a_crashed_replicas_unsettled_reservation_keeps_counting_until_the_day_ends(open_store):
    clock = Clock()
    crashed = Ledger(BUDGET, open_store(), clock=clock)
    held = await crashed.admit("app", Estimate(server_tokens=800))
    assert held.ok  # and never settled: the replica dies here

    survivor = Ledger(BUDGET, open_store(), clock=clock)
    refused = await survivor.admit("app", EST)
    assert not refused.ok and "0 of 1000 used today, 800 reserved by requests in flight" in refused.reason
    clock.t += DAY
    assert (await survivor.admit("app", EST)).ok
    await survivor.aclose()
    await crashed.aclose()


async def test_a_reservation_from_yesterday_settles_into_today(open_store):
    """Released from the day it was held on; the spend counts on the day it happened."""
    clock = Clock(t=2 * DAY - 1)
    ledger = Ledger(BUDGET, open_store(), clock=clock)
    late = await ledger.admit("app", Estimate(server_tokens=900))
    clock.t += 2
    await ledger.settle(late, Usage(server_prompt_tokens=600))
    assert (await ledger.stats())["app"]["server_tokens_today"] == 600
    clock.t -= 2  # yesterday's reservation is released: yesterday is empty again
    assert (await ledger.admit("app", Estimate(server_tokens=1000))).ok
    await ledger.aclose()
