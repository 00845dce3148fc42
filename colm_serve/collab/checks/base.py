"""The interface of a draft check, and the check that checks nothing."""

from __future__ import annotations

from typing import Protocol

from colm_serve.protocol.trace import CheckVerdict as Verdict


class Check(Protocol):
    name: str

    async def run(self, question: str, draft: str) -> Verdict: ...


class NoCheck:
    name = "none"

    async def run(self, question: str, draft: str) -> Verdict:
        return Verdict(name=self.name, outcome="none", detail="no check configured")
