"""The load test's options: Locust command-line flags, parsed once into a typed model.

Locust passes web-UI edits back as strings, so every field accepts its text form and the
model is rebuilt from `environment.parsed_options` at each test start.
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_MIX = "colm=6,colm-client=2,server/gpt-conv=2"


class LoadSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mix: dict[str, float] = Field(description="Model id -> relative weight of sessions sent to it.")
    api_keys: list[str] = Field(default_factory=list, description="One per simulated app, round robin.")
    max_tokens: int = Field(64, ge=1)
    stream_ratio: float = Field(0.5, ge=0, le=1, description="Share of requests sent with stream=True.")
    iterations: int | None = Field(None, ge=0, description="colm.iterations; None: the server's default.")
    top_k: int | None = Field(None, ge=1, description="colm.top_k; None: the server's default.")
    cache: bool = Field(True, description="False sends colm.cache=false on every request.")
    think_min_s: float = Field(1.0, ge=0)
    think_max_s: float = Field(3.0, ge=0)
    max_turns: int = Field(2, ge=1, description="Turns per session (MT-Bench questions have two).")
    request_timeout_s: float = Field(300.0, gt=0)
    seed: int = 0
    stats_interval_s: float = Field(5.0, ge=0, description="How often to sample /v1/colm/stats; 0: only at start and stop.")
    write_report: bool = True

    @field_validator("mix", mode="before")
    @classmethod
    def _parse_mix(cls, value: Any) -> Any:
        return parse_mix(value) if isinstance(value, str) else value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("iterations", "top_k", mode="before")
    @classmethod
    def _blank_is_default(cls, value: Any) -> Any:
        return None if value in ("", "default", -1, "-1") else value

    @model_validator(mode="after")
    def _check(self) -> "LoadSettings":
        if self.think_max_s < self.think_min_s:
            raise ValueError("--think-max must be at least --think-min")
        return self

    def colm_options(self, model: str) -> dict[str, Any]:
        """The `colm` request object: routing knobs only mean something for model `colm`."""
        options: dict[str, Any] = {}
        if model == "colm":
            if self.iterations is not None:
                options["iterations"] = self.iterations
            if self.top_k is not None:
                options["top_k"] = self.top_k
        if not self.cache:
            options["cache"] = False
        return options


def parse_mix(text: str) -> dict[str, float]:
    """'colm=6,server/gpt-conv=2' -> {'colm': 6.0, 'server/gpt-conv': 2.0}; a bare name weighs 1."""
    mix: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, weight = part.partition("=")
        try:
            mix[name.strip()] = float(weight) if weight else 1.0
        except ValueError as e:
            raise ValueError(f"--colm-mix: bad weight in {part!r}") from e
    if not mix or any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"--colm-mix: need at least one model with a positive weight, got {text!r}")
    return mix


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Locust's `init_command_line_parser` hook.

    Added on the parser itself, not a group: only LocustArgumentParser.add_argument puts
    an option on the web UI's start form.
    """
    group = parser
    group.add_argument("--colm-mix", default=DEFAULT_MIX, help="Sessions per model, e.g. " + DEFAULT_MIX)
    group.add_argument("--api-keys", default="", is_secret=True, env_var="COLM_API_KEYS",
                       help="Comma-separated API keys, one per simulated app (round robin).")
    group.add_argument("--max-tokens", type=int, default=64, help="max_tokens of every request.")
    group.add_argument("--stream-ratio", type=float, default=0.5, help="Share of streamed requests (0..1).")
    group.add_argument("--colm-iterations", default="", help="colm.iterations (blank: server default).")
    group.add_argument("--colm-top-k", default="", help="colm.top_k (blank: server default).")
    group.add_argument("--colm-cache", choices=["on", "off"], default="on",
                       help="off: send colm.cache=false on every request.")
    group.add_argument("--think-min", type=float, default=1.0, help="Think time between turns, min seconds.")
    group.add_argument("--think-max", type=float, default=3.0, help="Think time between turns, max seconds.")
    group.add_argument("--max-turns", type=int, default=2, help="Turns per session.")
    group.add_argument("--request-timeout", type=float, default=300.0, help="Client timeout per request, seconds.")
    group.add_argument("--colm-seed", type=int, default=0, help="Seed of the question order (same seed, same workload).")
    group.add_argument("--colm-stats-interval", type=float, default=5.0,
                       help="Seconds between /v1/colm/stats samples (0: start and stop only).")
    group.add_argument("--colm-report", choices=["on", "off"], default="on",
                       help="With --csv: write PREFIX_report.html when Locust quits.")


def settings_from_options(options: argparse.Namespace) -> LoadSettings:
    return LoadSettings(
        mix=options.colm_mix,
        api_keys=options.api_keys,
        max_tokens=options.max_tokens,
        stream_ratio=options.stream_ratio,
        iterations=options.colm_iterations,
        top_k=options.colm_top_k,
        cache=options.colm_cache == "on",
        think_min_s=options.think_min,
        think_max_s=options.think_max,
        max_turns=options.max_turns,
        request_timeout_s=options.request_timeout,
        seed=options.colm_seed,
        stats_interval_s=options.colm_stats_interval,
        write_report=options.colm_report == "on",
    )

