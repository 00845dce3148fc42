"""Checks a cascade runs on the client model's draft before its confidence score decides: a
draft that fails one escalates whatever its score (`collaboration.cascade.check`)."""

from __future__ import annotations

from collections.abc import Callable

from colm_serve.collab.checks.base import Check, NoCheck, Verdict
from colm_serve.collab.checks.examples import ExamplesCheck

CHECKS: dict[str, Callable[..., Check]] = {
    "none": lambda **_: NoCheck(),
    "examples": lambda *, timeout_s: ExamplesCheck(timeout_s=timeout_s),
}


def build_checks(*, timeout_s: float) -> dict[str, Check]:
    return {name: make(timeout_s=timeout_s) for name, make in CHECKS.items()}


__all__ = ["CHECKS", "Check", "Verdict", "build_checks"]
