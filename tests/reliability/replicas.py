"""The running app's Serve replica actors, for the serve-marked fault tests.

They connect to the lead's Ray cluster as a driver (`ray.init(address="auto")`), which
starts nothing; `ray.shutdown()` afterwards only disconnects.
"""

from __future__ import annotations

import time
from typing import Any

from tests.processes import kill_orphaned_engines

SERVE_NAMESPACE = "serve"


def alive_replicas(deployment: str, *, app: str = "colm") -> list[str]:
    from ray.util.state import list_actors

    actors = list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
    return sorted(a.name for a in actors if a.class_name == f"ServeReplica:{app}:{deployment}")


def kill_replica(deployment: str, *, app: str = "colm") -> str:
    """Kills one live replica of the deployment (no restart by Ray: Serve must replace it)."""
    import ray

    names = alive_replicas(deployment, app=app)
    assert names, f"no live replica of {app}:{deployment}"
    ray.kill(ray.get_actor(names[0], namespace=SERVE_NAMESPACE), no_restart=True)
    return names[0]


def wait_for_new_replica(deployment: str, *, killed: str, app: str = "colm", timeout_s: float = 240) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fresh = [n for n in alive_replicas(deployment, app=app) if n != killed]
        if fresh:
            kill_orphaned_engines()  # the killed replica's vLLM processes, if it had any
            return fresh[0]
        time.sleep(2)  # a plain (sync) test polling Ray's state API
    raise AssertionError(f"Serve did not start a new {deployment} replica within {timeout_s:.0f} s")


def deployment_handle(deployment: str, *, app: str = "colm") -> Any:
    from ray import serve

    return serve.get_deployment_handle(deployment, app_name=app)
