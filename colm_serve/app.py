"""Application builders: the only place where deployments are created and bound.

serve_config.yaml names them by import path (`colm_serve.app:build_app`), and Serve passes the
YAML `args` as a dict; the first line of each builder validates it.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from colm_serve.accounting.ledger import Ledger
from colm_serve.api.ingress import RouterIngress
from colm_serve.client_model.engine import LLMEngine
from colm_serve.config import AppArgs, StandInArgs
from colm_serve.server_proxy.proxy import ServerProxy
from colm_serve.stand_in.service import StandInService


def build_app(raw_args: dict[str, Any]) -> Application:
    """The CoLM router app: ingress -> (ServerProxy per upstream server, ClientModel)."""
    args = AppArgs.model_validate(raw_args)
    cm = args.client_model
    client = serve.deployment(LLMEngine, **cm.deployment.serve_options("ClientModel")).bind(
        cm.engine, default_max_tokens=cm.default_max_tokens
    )
    proxies = {
        s.name: serve.deployment(ServerProxy, **s.deployment.serve_options(f"ServerProxy-{s.name}")).bind(s, metrics="ray")
        for s in args.servers
    }
    # One replica on purpose: every router replica shares its budgets and per-key counts.
    ledger = serve.deployment(Ledger, name="Ledger", num_replicas=1, ray_actor_options={"num_cpus": 0.01}).bind(
        args.budgets
    )
    ingress = serve.deployment(serve.ingress()(RouterIngress), **args.router.deployment.serve_options("Router"))
    return ingress.bind(args.model_dump(mode="json"), client, proxies, ledger)


def build_stand_in_app(raw_args: dict[str, Any]) -> Application:
    """The embedded OpenAI-compatible server that stands in for cloud providers offline."""
    args = StandInArgs.model_validate(raw_args)
    engine = serve.deployment(LLMEngine, **args.deployment.serve_options("StandInEngine")).bind(
        args.engine, default_max_tokens=args.default_max_tokens
    )
    ingress = serve.deployment(serve.ingress()(StandInService), **args.ingress.serve_options("StandIn"))
    return ingress.bind(args.model_dump(mode="json"), engine)
