"""The CoLM application's builder: the only place where its deployments are created and bound.

serve_config.yaml names it by import path (`colm_serve.app:build_app`), and Serve passes the
YAML `args` as a dict; the first line validates it. The embedded stand-in server has its own
builder in `colm_serve.stand_in.app`, so the request path never imports it.
"""

from __future__ import annotations

import functools
from typing import Any

from ray import serve
from ray.serve import Application

from colm_serve.accounting.ledger import SpendRecorder
from colm_serve.api.ingress import RouterIngress
from colm_serve.client_model.engine import LLMEngine
from colm_serve.config import AppArgs
from colm_serve.server_proxy.proxy import ServedProxy


def build_app(raw_args: dict[str, Any]) -> Application:
    """The CoLM router app: ingress -> (ServerProxy per upstream server, ClientModel)."""
    args = AppArgs.model_validate(raw_args)
    cm, limits = args.client_model, args.serve_limits()
    client = cm and serve.deployment(LLMEngine, **cm.deployment.serve_options("ClientModel", limits["ClientModel"])).bind(
        cm.engine, default_max_tokens=cm.default_max_tokens, queue_limit=cm.queue_limit
    )
    proxies = {
        s.name: serve.deployment(ServedProxy, **s.deployment.serve_options(name, limits[name])).bind(
            s, metrics="ray", spend_sink=functools.partial(SpendRecorder, args.accounting.model_dump(mode="json"))
        )
        for s in args.servers
        for name in [f"ServerProxy-{s.name}"]
    }
    ingress = serve.deployment(serve.ingress()(RouterIngress), **args.router.deployment.serve_options("Router", limits["Router"]))
    return ingress.bind(args.model_dump(mode="json"), client, proxies)
