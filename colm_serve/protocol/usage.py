"""The token and cost arithmetic of a request: a Usage adds up across steps, rounds and requests."""

from __future__ import annotations

from pydantic import BaseModel, Field, computed_field


class Usage(BaseModel):
    """Token and cost accounting that adds up across steps, rounds and requests.

    `server_cached_prompt_tokens` is the part of `server_prompt_tokens` a provider's prefix
    cache served (billed at the cached price); `server_estimated_tokens` the part of the
    server tokens we had to estimate (attempts that timed out or were abandoned, upstreams
    that report no usage). The baseline is what the reference server alone would have charged
    for an answer of the same length; `saving_usd` is the baseline less the cost.
    """

    server_prompt_tokens: int = 0
    server_cached_prompt_tokens: int = 0
    server_completion_tokens: int = 0
    server_estimated_tokens: int = 0
    client_prompt_tokens: int = 0
    client_completion_tokens: int = 0
    cost_usd: float = 0.0
    baseline_cost_usd: float | None = Field(
        None, description="What the reference server alone would have charged for an answer this long: an estimate."
    )
    saving_usd: float | None = None
    baseline_estimated: bool = Field(False, description="The baseline is estimated (4 characters a token), not billed.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def server_tokens(self) -> int:
        return self.server_prompt_tokens + self.server_completion_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def client_tokens(self) -> int:
        return self.client_prompt_tokens + self.client_completion_tokens

    def __add__(self, other: "Usage") -> "Usage":
        def both(a: float | None, b: float | None) -> float | None:
            return None if a is None and b is None else round((a or 0.0) + (b or 0.0), 10)

        return Usage(
            server_prompt_tokens=self.server_prompt_tokens + other.server_prompt_tokens,
            server_cached_prompt_tokens=self.server_cached_prompt_tokens + other.server_cached_prompt_tokens,
            server_completion_tokens=self.server_completion_tokens + other.server_completion_tokens,
            server_estimated_tokens=self.server_estimated_tokens + other.server_estimated_tokens,
            client_prompt_tokens=self.client_prompt_tokens + other.client_prompt_tokens,
            client_completion_tokens=self.client_completion_tokens + other.client_completion_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 10),
            baseline_cost_usd=both(self.baseline_cost_usd, other.baseline_cost_usd),
            saving_usd=both(self.saving_usd, other.saving_usd),
            baseline_estimated=self.baseline_estimated or other.baseline_estimated,
        )
