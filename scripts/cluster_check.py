"""Checks for scripts/cluster_test.sh: the parts of the two-node test that need parsing.

Subcommands (each exits non-zero with a message when its check fails):
  nodes          read `ray list nodes --format json` and require 2+ ALIVE nodes
  loopback       require every node's IP, and every address a Ray process was started with
                 (--node-ip-address, --gcs-address, --address; from `ps -eo args`), on 127.0.0.1
  wait           poll Serve's REST API until every app is RUNNING and every deployment has
                 its target replica count RUNNING (optionally: an expected count per deployment)
  replicated     print the deployments of an app that run 2+ replicas (router and proxies)
  spread         read `ray list actors --format json` and require each replicated deployment
                 to have ALIVE replicas on 2+ nodes
  served         scrape each node's metrics endpoint and require each given deployment to have
                 answered requests on every node (so traffic really crossed nodes)
  scaled-config  write the Serve config with `deployments:` num_replicas overrides (and, with
                 --autoscale, Serve autoscaling for chosen deployments), validated
  autoscaled     poll Serve's REST API until Serve's autoscaler (not a config change) has
                 brought a deployment to N running replicas, printing each status change
  locust-ok      require a Locust run with requests and zero failures
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from loadtest._records import read_records, requests_csv_path

REPLICA_ACTOR = re.compile(r"^SERVE_REPLICA::(?P<app>[^#]+)#(?P<deployment>[^#]+)#(?P<replica>.+)$")
REQUEST_COUNTER = re.compile(r"^ray_serve_deployment_request_counter(?:_total)?\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class CheckFailed(Exception):
    """A cluster check did not hold; the message says what was seen."""


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def app_states(dashboard: str) -> dict[str, Any]:
    return get_json(f"{dashboard.rstrip('/')}/api/serve/applications/").get("applications") or {}


def running_replicas(dep: dict[str, Any]) -> int:
    return sum(1 for r in dep.get("replicas") or [] if r.get("state") == "RUNNING")


def not_ready(apps: dict[str, Any], expect: dict[str, int]) -> list[str]:
    """Why the apps are not settled yet; empty when they are."""
    problems = []
    for app_name, app in apps.items():
        if app.get("status") != "RUNNING":
            problems.append(f"app {app_name} is {app.get('status')}: {app.get('message', '')[:200]}")
        for name, dep in (app.get("deployments") or {}).items():
            running = running_replicas(dep)
            target = expect.get(name, dep.get("target_num_replicas"))
            if running != target or dep.get("target_num_replicas") != target:
                problems.append(f"{app_name}/{name}: {running} running, target {dep.get('target_num_replicas')}, want {target}")
    for name in expect:
        if not any(name in (app.get("deployments") or {}) for app in apps.values()):
            problems.append(f"deployment {name} not found")
    return problems if apps else ["no applications yet"]


def cmd_nodes(args: argparse.Namespace) -> None:
    nodes = json.loads(Path(args.nodes).read_text())
    alive = [n for n in nodes if n.get("state") == "ALIVE"]
    if len(alive) < args.min_nodes:
        raise CheckFailed(f"{len(alive)} ALIVE Ray node(s), want {args.min_nodes}+")
    print(f"ray: {len(alive)} nodes ALIVE: {', '.join(n['node_id'][:12] for n in alive)}")


RAY_ADDRESS_FLAG = re.compile(r"--(node-ip-address|gcs-address|gcs_address|address)[= ](\S+)")
RAY_PROCESS = re.compile(r"(gcs_server|raylet|default_worker\.py|dashboard|log_monitor|runtime_env|ray::|ray start)")


def off_loopback(nodes: list[dict[str, Any]], processes: list[str]) -> list[str]:
    """Every Ray address seen that is not on 127.0.0.1, named with where it was seen."""
    wrong = [f"node {n.get('node_id', '?')[:12]}: node_ip {n.get('node_ip')}" for n in nodes if n.get("node_ip") != "127.0.0.1"]
    for line in processes:
        if not RAY_PROCESS.search(line):
            continue
        for flag, value in RAY_ADDRESS_FLAG.findall(line):
            host = value.rsplit(":", 1)[0] if flag != "node-ip-address" else value
            if host != "127.0.0.1":
                wrong.append(f"--{flag}={value} in: {line[:120]}")
    return wrong


def cmd_loopback(args: argparse.Namespace) -> None:
    nodes = json.loads(Path(args.nodes).read_text())
    processes = Path(args.processes).read_text().splitlines()
    seen = sum(1 for line in processes if RAY_PROCESS.search(line) and RAY_ADDRESS_FLAG.search(line))
    if not nodes or not seen:
        raise CheckFailed(f"nothing to check: {len(nodes)} nodes, {seen} Ray processes with an address")
    wrong = off_loopback(nodes, processes)
    if wrong:
        raise CheckFailed("Ray addresses off loopback:\n  " + "\n  ".join(wrong[:10]))
    print(f"loopback: {len(nodes)} nodes and {seen} Ray processes, every address on 127.0.0.1")


def cmd_wait(args: argparse.Namespace) -> None:
    expect = dict(_parse_expect(item) for item in args.expect)
    deadline = time.monotonic() + args.timeout
    problems = ["not polled"]
    while time.monotonic() < deadline:
        try:
            apps = app_states(args.dashboard)
        except OSError as exc:  # the dashboard is still starting: keep polling
            problems = [f"dashboard not reachable: {exc}"]
        else:
            problems = not_ready(apps, expect)
            if any(app.get("status") == "DEPLOY_FAILED" for app in apps.values()):
                break  # final until the next deploy: no use waiting
        if not problems:
            print("serve: all applications RUNNING" + (f" with {expect}" if expect else ""))
            return
        time.sleep(args.interval)
    raise CheckFailed("not ready: " + "; ".join(problems))


def replicated(apps: dict[str, Any], app_name: str) -> list[str]:
    deployments = (apps.get(app_name) or {}).get("deployments") or {}
    return sorted(n for n, d in deployments.items() if (d.get("target_num_replicas") or 0) >= 2)


def cmd_replicated(args: argparse.Namespace) -> None:
    names = replicated(app_states(args.dashboard), args.app)
    if not names:
        raise CheckFailed(f"app {args.app} has no deployment with 2+ replicas")
    print("\n".join(names))


def nodes_by_deployment(actors: list[dict[str, Any]], app_name: str) -> dict[str, set[str]]:
    nodes: dict[str, set[str]] = defaultdict(set)
    for actor in actors:
        match = REPLICA_ACTOR.match(actor.get("name") or "")
        if match and match["app"] == app_name and actor.get("state") == "ALIVE":
            nodes[match["deployment"]].add(actor["node_id"])
    return nodes


def cmd_spread(args: argparse.Namespace) -> None:
    actors = json.loads(Path(args.actors).read_text() if args.actors != "-" else sys.stdin.read())
    nodes = nodes_by_deployment(actors, args.app)
    for name in args.deployment:
        seen = nodes.get(name, set())
        if len(seen) < args.min_nodes:
            raise CheckFailed(f"{args.app}/{name}: ALIVE replicas on {len(seen)} node(s) {sorted(seen)}, want {args.min_nodes}+")
        print(f"{args.app}/{name}: replicas on {len(seen)} nodes: {', '.join(n[:12] for n in sorted(seen))}")


def requests_by_deployment(metrics_text: str, app_name: str) -> dict[str, float]:
    """Requests answered per deployment of `app_name`, from one node's Prometheus text."""
    totals: dict[str, float] = defaultdict(float)
    for line in metrics_text.splitlines():
        match = REQUEST_COUNTER.match(line)
        if not match:
            continue
        labels = dict(LABEL.findall(match["labels"]))
        if labels.get("application") == app_name:
            totals[labels.get("deployment", "?")] += float(match["value"])
    return totals


def missing_traffic(metrics_urls: list[str], app_name: str, deployments: list[str]) -> list[str]:
    problems = []
    for url in metrics_urls:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                counts = requests_by_deployment(resp.read().decode(), app_name)
        except OSError as exc:
            problems.append(f"{url}: not reachable: {exc}")
            continue
        problems += [f"{url}: {app_name}/{d} answered no requests" for d in deployments if counts.get(d, 0) <= 0]
    return problems


def cmd_served(args: argparse.Namespace) -> None:
    # Ray exports metrics every few seconds, so the counters lag the load a little.
    deadline = time.monotonic() + args.timeout
    problems = missing_traffic(args.metrics, args.app, args.deployment)
    while problems and time.monotonic() < deadline:
        time.sleep(args.interval)
        problems = missing_traffic(args.metrics, args.app, args.deployment)
    if problems:
        raise CheckFailed("; ".join(problems))
    print(f"{args.app}: {', '.join(args.deployment)} answered requests on all {len(args.metrics)} nodes")


def scaled_config(doc: dict[str, Any], *, app_name: str, replicas: int, deployments: list[str],
                  autoscale: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """The config with `deployments:` overrides: a lightweight update that keeps the app's args,
    so Serve only adds or drains replicas and restarts nothing. Deployments in `autoscale` get
    Serve's own autoscaling_config instead of a fixed count."""
    apps = [a for a in doc["applications"] if a["name"] == app_name]
    if not apps:
        raise CheckFailed(f"no application {app_name!r} in the config")
    overrides = {d["name"]: d for d in apps[0].get("deployments", [])}
    for name in deployments:
        overrides[name] = {**overrides.get(name, {"name": name}), "num_replicas": replicas}
    for name, policy in (autoscale or {}).items():
        overrides[name] = {**overrides.get(name, {"name": name}), "num_replicas": "auto", "autoscaling_config": policy}
    apps[0]["deployments"] = list(overrides.values())
    return doc


def cmd_scaled_config(args: argparse.Namespace) -> None:
    # Imported here: it pulls in Ray's schema, which the polling commands do not need.
    from colm_serve.deploy_config import validate_serve_config

    policy = {"min_replicas": args.min_replicas, "max_replicas": args.max_replicas,
              "target_ongoing_requests": args.target_ongoing_requests,
              "upscale_delay_s": args.upscale_delay_s, "downscale_delay_s": args.downscale_delay_s}
    autoscale = {name: policy for name in args.autoscale}
    fixed = [name for name in args.deployment if name not in autoscale]
    doc = scaled_config(yaml.safe_load(Path(args.config).read_text()), app_name=args.app,
                        replicas=args.replicas, deployments=fixed, autoscale=autoscale)
    validate_serve_config(doc, source=args.out)
    Path(args.out).write_text(yaml.safe_dump(doc, sort_keys=False))
    print(f"{args.out}: {', '.join(fixed) or 'none'} at {args.replicas} replicas"
          + (f"; autoscaling {', '.join(autoscale)} with {policy}" if autoscale else ""))


AUTOSCALER_MARKS = {"UPSCALING", "DOWNSCALING", "AUTOSCALING", "UPSCALE_COMPLETED", "DOWNSCALE_COMPLETED"}


def deployment_state(apps: dict[str, Any], app_name: str, name: str) -> tuple[str, str, int, int]:
    """(status, status_trigger, target, running) of one deployment, as `serve status` shows it."""
    dep = ((apps.get(app_name) or {}).get("deployments") or {}).get(name)
    if dep is None:
        raise CheckFailed(f"{app_name}/{name} not found")
    return dep.get("status", "?"), dep.get("status_trigger", "?"), dep.get("target_num_replicas") or 0, running_replicas(dep)


def cmd_autoscaled(args: argparse.Namespace) -> None:
    """Status and trigger only reach UPSCALING/DOWNSCALING, AUTOSCALING and *SCALE_COMPLETED
    through Serve's autoscaler (a config change reads UPDATING/CONFIG_UPDATE_*), so seeing one
    of them proves the autoscaler, not this script, changed the replica count."""
    start = time.monotonic()
    seen: set[str] = set()
    last = None
    while time.monotonic() - start < args.timeout:
        state = deployment_state(app_states(args.dashboard), args.app, args.deployment)
        if state != last:
            print(f"[{time.monotonic() - start:6.1f}s] {args.app}/{args.deployment}: status {state[0]}, "
                  f"trigger {state[1]}, target {state[2]}, running {state[3]}", flush=True)
            last = state
        if state[2] == args.replicas:  # marks of an earlier move the other way do not count
            seen.update(state[:2])
        if state[2] == state[3] == args.replicas and seen & AUTOSCALER_MARKS:
            print(f"autoscaler brought {args.app}/{args.deployment} to {args.replicas} replica(s) "
                  f"in {time.monotonic() - start:.0f}s")
            return
        time.sleep(args.interval)
    raise CheckFailed(f"{args.app}/{args.deployment} did not autoscale to {args.replicas} replicas in "
                      f"{args.timeout:.0f}s; last seen {last}")


def cmd_locust_ok(args: argparse.Namespace) -> None:
    """Locust's CSV stops counting when the run time ends, so answers finished in the stop
    timeout (a colm answer on CPU can take minutes) are only in the load test's own record of
    every request, PREFIX_colm_requests.csv: requests are counted there when it exists, and a
    failure in either file fails the check."""
    path = Path(f"{args.csv}_stats.csv")
    rows = [r for r in csv.DictReader(path.open()) if r.get("Name") == "Aggregated"]
    if not rows:
        raise CheckFailed(f"{path}: no Aggregated row")
    requests, failures = int(rows[0]["Request Count"]), int(rows[0]["Failure Count"])
    records = requests_csv_path(args.csv)
    if records.exists():
        kept = read_records(records)
        path, requests = records, len(kept)
        failures = max(failures, sum(not r.ok for r in kept))
    if requests < args.min_requests or failures:
        raise CheckFailed(f"{path}: {requests} requests, {failures} failures (want {args.min_requests}+ and 0)")
    print(f"locust: {requests} requests, 0 failures")


def _parse_expect(item: str) -> tuple[str, int]:
    name, _, count = item.rpartition("=")
    if not name or not count.isdigit():
        raise argparse.ArgumentTypeError(f"--expect wants DEPLOYMENT=N, got {item!r}")
    return name, int(count)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    nodes = sub.add_parser("nodes")
    nodes.add_argument("--nodes", required=True, help="`ray list nodes --format json` output")
    nodes.add_argument("--min-nodes", type=int, default=2)
    loop = sub.add_parser("loopback")
    loop.add_argument("--nodes", required=True, help="`ray list nodes --format json` output")
    loop.add_argument("--processes", required=True, help="`ps -eo args` output")
    wait = sub.add_parser("wait")
    wait.add_argument("--dashboard", required=True)
    wait.add_argument("--expect", action="append", default=[], help="DEPLOYMENT=N running replicas")
    wait.add_argument("--timeout", type=float, default=900)
    wait.add_argument("--interval", type=float, default=5)
    rep = sub.add_parser("replicated")
    rep.add_argument("--dashboard", required=True)
    rep.add_argument("--app", default="colm")
    spread = sub.add_parser("spread")
    spread.add_argument("--actors", default="-", help="`ray list actors --format json` output; - for stdin")
    spread.add_argument("--app", default="colm")
    spread.add_argument("--deployment", action="append", required=True)
    spread.add_argument("--min-nodes", type=int, default=2)
    served = sub.add_parser("served")
    served.add_argument("--metrics", action="append", required=True, help="a node's /metrics URL")
    served.add_argument("--app", default="colm")
    served.add_argument("--deployment", action="append", required=True)
    served.add_argument("--timeout", type=float, default=60)
    served.add_argument("--interval", type=float, default=5)
    scaled = sub.add_parser("scaled-config")
    scaled.add_argument("--config", required=True)
    scaled.add_argument("--out", required=True)
    scaled.add_argument("--app", default="colm")
    scaled.add_argument("--replicas", type=int, required=True)
    scaled.add_argument("--deployment", action="append", required=True)
    scaled.add_argument("--autoscale", action="append", default=[], help="a deployment to autoscale instead")
    scaled.add_argument("--min-replicas", type=int, default=1)
    scaled.add_argument("--max-replicas", type=int, default=2)
    scaled.add_argument("--target-ongoing-requests", type=float, default=1)
    scaled.add_argument("--upscale-delay-s", type=float, default=5)
    scaled.add_argument("--downscale-delay-s", type=float, default=30)
    auto = sub.add_parser("autoscaled")
    auto.add_argument("--dashboard", required=True)
    auto.add_argument("--app", default="colm")
    auto.add_argument("--deployment", required=True)
    auto.add_argument("--replicas", type=int, required=True)
    auto.add_argument("--timeout", type=float, default=300)
    auto.add_argument("--interval", type=float, default=2)
    locust = sub.add_parser("locust-ok")
    locust.add_argument("--csv", required=True, help="the --csv prefix given to locust")
    locust.add_argument("--min-requests", type=int, default=1)
    return parser


COMMANDS = {"nodes": cmd_nodes, "loopback": cmd_loopback, "wait": cmd_wait, "replicated": cmd_replicated, "spread": cmd_spread, "served": cmd_served,
            "scaled-config": cmd_scaled_config, "autoscaled": cmd_autoscaled, "locust-ok": cmd_locust_ok}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (CheckFailed, ValueError) as exc:
        print(f"cluster_check {args.command}: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
