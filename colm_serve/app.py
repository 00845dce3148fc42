"""Application builders: the only place where deployments are created and bound.

serve_config.yaml names them by import path (`colm_serve.app:build_app`), and Serve passes the
YAML `args` as a dict; the first line of each builder validates it.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from colm_serve.client_model.engine import LLMEngine
from colm_serve.config import AppArgs, UpstreamArgs
from colm_serve.proxies.deployment import ServerProxy
from colm_serve.router.ingress import RouterService
from colm_serve.router.ledger import Ledger
from colm_serve.upstream.server import UpstreamService


def build_app(raw_args: dict[str, Any]) -> Application:
    """The CoLM router app: ingress -> (ServerProxy per upstream server, ClientModel)."""
    args = AppArgs.model_validate(raw_args)
    cm = args.client_model
    client = serve.deployment(LLMEngine, **cm.deployment.serve_options("ClientModel")).bind(
        cm.engine, default_max_tokens=cm.default_max_tokens
    )
    proxies = {
        s.name: serve.deployment(ServerProxy, **s.deployment.serve_options(f"ServerProxy-{s.name}")).bind(s)
        for s in args.servers
    }
    # One replica on purpose: every router replica shares its budgets and per-key counts.
    ledger = serve.deployment(Ledger, name="Ledger", num_replicas=1, ray_actor_options={"num_cpus": 0.01}).bind(
        args.budgets
    )
    ingress = serve.deployment(serve.ingress()(RouterService), **args.router.deployment.serve_options("Router"))
    return ingress.bind(args.model_dump(mode="json"), client, proxies, ledger)


def build_upstream_app(raw_args: dict[str, Any]) -> Application:
    """The embedded OpenAI-compatible server that stands in for cloud providers offline."""
    args = UpstreamArgs.model_validate(raw_args)
    engine = serve.deployment(LLMEngine, **args.deployment.serve_options("UpstreamEngine")).bind(
        args.engine, default_max_tokens=args.default_max_tokens
    )
    ingress = serve.deployment(serve.ingress()(UpstreamService), **args.ingress.serve_options("UpstreamIngress"))
    return ingress.bind(args.model_dump(mode="json"), engine)
