"""The stand-in's application builder, kept in its own room: nothing on the request path
imports the stand-in, so a deployment against cloud providers carries none of it.

serve_config.yaml names it `colm_serve.stand_in.app:build_stand_in_app`; Serve passes the
YAML `args` as a dict, and the first line validates it.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from colm_serve.client_model.engine import LLMEngine
from colm_serve.client_model.llama_engine import LlamaCppEngine
from colm_serve.config import LlamaCppConfig, StandInArgs
from colm_serve.stand_in.service import StandInService


def build_stand_in_app(raw_args: dict[str, Any]) -> Application:
    """The embedded OpenAI-compatible server that stands in for cloud providers offline."""
    args = StandInArgs.model_validate(raw_args)
    limits = args.serve_limits()
    # llama.cpp's library is loaded in the replica that runs it (`make llama` installs it).
    engine_class = LlamaCppEngine if isinstance(args.engine, LlamaCppConfig) else LLMEngine
    engine = serve.deployment(engine_class, **args.deployment.serve_options("StandInEngine", limits["StandInEngine"])).bind(
        args.engine, default_max_tokens=args.default_max_tokens, queue_limit=args.queue_limit
    )
    ingress = serve.deployment(serve.ingress()(StandInService), **args.ingress.serve_options("StandIn", limits["StandIn"]))
    return ingress.bind(args.model_dump(mode="json"), engine)
