"""Benchmark-only request headers: knobs for measuring CoLM, kept out of the public `colm` options.

They are not part of the API: the OpenAPI document leaves them out, and nothing but the
benchmarks should send them.
"""

from __future__ import annotations

from collections.abc import Mapping

from colm_serve.errors import InvalidRequest

FILL_SERVER_CAPS = "X-Colm-Bench-Fill-Server-Caps"
_VALUES = {"1": True, "true": True, "0": False, "false": False}


def fill_server_caps(headers: Mapping[str, str]) -> bool:
    """`X-Colm-Bench-Fill-Server-Caps: 1`: every server step writes its whole output cap (vLLM's
    `ignore_eos` upstream), the worst case for CoLM's cost (benchmarks/cost.py --realistic-lengths).
    It needs upstreams that accept `ignore_eos`, such as vLLM or the stand-in."""
    value = headers.get(FILL_SERVER_CAPS)
    if value is None:
        return False
    if value.strip().lower() not in _VALUES:
        raise InvalidRequest(f"{FILL_SERVER_CAPS} takes 1 or 0, not {value!r}", param=None)
    return _VALUES[value.strip().lower()]
