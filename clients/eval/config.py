"""Typed arguments of the three `colm-eval` commands, parsed once at the CLI edge."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Bench = Literal["mt-bench", "arena-hard", "alpaca-eval"]
BENCHES: tuple[Bench, ...] = ("mt-bench", "arena-hard", "alpaca-eval")
Structured = Literal["auto", "on", "off"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetryPolicy(Strict):
    """Retries of transient failures (connection errors, timeouts, 408/409/429/5xx)."""

    max_attempts: int = Field(5, ge=1, description="Attempts in all, the first included.")
    backoff_base_s: float = Field(1.0, ge=0, description="First wait; doubles on each retry.")
    backoff_max_s: float = Field(30.0, ge=0)
    max_retry_after_s: float = Field(120.0, ge=0, description="Longest server Retry-After we honour.")


class Endpoint(Strict):
    """One OpenAI-compatible endpoint and the model id asked there."""

    base_url: str = Field(pattern=r"^https?://", description="e.g. http://127.0.0.1:8000/v1")
    model: str = Field(min_length=1, description="Model id: colm, colm-client, server/<name>, ...")
    api_key: str = Field("EMPTY", description="Bearer key; servers without auth ignore it.")
    timeout_s: float = Field(600.0, gt=0, description="Per-attempt timeout.")
    extra_body: dict[str, Any] = Field(default_factory=dict, description='Merged into each body, e.g. {"colm": {"top_k": 1}}.')
    retry: RetryPolicy = Field(default_factory=RetryPolicy)


class GenerateArgs(Strict):
    bench: Bench
    endpoint: Endpoint
    name: str | None = Field(None, description="Output name (default: the model id, made file-safe, and the strategy).")
    strategy: str | None = Field(None, min_length=1, description='CoLM strategy, sent as {"colm": {"strategy": ...}}.')
    out_dir: Path = Path("eval_out")
    questions: Path | None = Field(None, description="Question file (required for alpaca-eval).")
    limit: int | None = Field(None, ge=1, description="Only the first N questions.")
    concurrency: int = Field(4, ge=1, description="Questions in flight at once.")
    max_tokens: int = Field(1024, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, description="Default: the benchmark's own.")
    system_prompt: str | None = None


class JudgeArgs(Strict):
    bench: Bench
    judge: Endpoint
    out_dir: Path = Path("eval_out")
    models: list[str] = Field(default_factory=list, description="Output names to judge (default: all).")
    baseline: str | None = Field(None, description="Baseline/reference answers: a file, or an output name.")
    questions: Path | None = None
    limit: int | None = Field(None, ge=1)
    concurrency: int = Field(4, ge=1)
    max_tokens: int = Field(2048, ge=1, description="Judge output budget (clamped to the judge's context).")
    judge_prompt: Path | None = Field(None, description="JSON {system_prompt, prompt_template} replacing the default.")
    structured: Structured = Field(
        "auto", description="Constrain the verdict with vLLM structured outputs: auto = when /v1/models shows vLLM.")


class TableArgs(Strict):
    out_dir: Path = Path("eval_out")
    benches: list[Bench] = Field(default_factory=lambda: list(BENCHES))
    cost_baseline: str | None = Field(
        None, description="Output name of the server alone, for the cost ratio (default: the one server__* output).")
    plot: Path | None = None
    csv: Path | None = None
    checkable: Path | None = Field(
        None, description="answers.json of benchmarks/quality.py: accuracy beside cost per arm, after the judged table.")
