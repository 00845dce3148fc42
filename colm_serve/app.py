"""Application builders: the only place where deployments are created and bound.

serve_config.yaml names them by import path (`colm_serve.app:build_app`), and Serve passes the
YAML `args` as a dict; the first line of each builder validates it.
"""

from __future__ import annotations

import functools
from typing import Any

from ray import serve
from ray.serve import Application

from colm_serve.accounting.ledger import spend_recorder
from colm_serve.api.ingress import RouterIngress
from colm_serve.client_model.engine import LLMEngine
from colm_serve.config import AppArgs, StandInArgs
from colm_serve.server_proxy.proxy import ServerProxy
from colm_serve.stand_in.service import StandInService


def build_app(raw_args: dict[str, Any]) -> Application:
    """The CoLM router app: ingress -> (ServerProxy per upstream server, ClientModel)."""
    args = AppArgs.model_validate(raw_args)
    cm, limits = args.client_model, args.serve_limits()
    client = cm and serve.deployment(LLMEngine, **cm.deployment.serve_options("ClientModel", limits["ClientModel"])).bind(
        cm.engine, default_max_tokens=cm.default_max_tokens, queue_limit=cm.queue_limit
    )
    proxies = {
        s.name: serve.deployment(ServerProxy, **s.deployment.serve_options(name, limits[name])).bind(
            s, metrics="ray", spend_sink=functools.partial(spend_recorder, args.accounting.model_dump(mode="json"))
        )
        for s in args.servers
        for name in [f"ServerProxy-{s.name}"]
    }
    ingress = serve.deployment(serve.ingress()(RouterIngress), **args.router.deployment.serve_options("Router", limits["Router"]))
    return ingress.bind(args.model_dump(mode="json"), client, proxies)


def build_stand_in_app(raw_args: dict[str, Any]) -> Application:
    """The embedded OpenAI-compatible server that stands in for cloud providers offline."""
    args = StandInArgs.model_validate(raw_args)
    limits = args.serve_limits()
    engine = serve.deployment(LLMEngine, **args.deployment.serve_options("StandInEngine", limits["StandInEngine"])).bind(
        args.engine, default_max_tokens=args.default_max_tokens, queue_limit=args.queue_limit
    )
    ingress = serve.deployment(serve.ingress()(StandInService), **args.ingress.serve_options("StandIn", limits["StandIn"]))
    return ingress.bind(args.model_dump(mode="json"), engine)
