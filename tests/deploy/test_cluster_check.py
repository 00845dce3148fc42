"""scripts/cluster_check.py, the parsing half of scripts/cluster_test.sh, run as the script
runs it (a subprocess) against files and real local HTTP servers that stand in for Ray."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from colm_serve.deploy_config import validate_serve_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster_check.py"
CLUSTER_CONFIG = ROOT / "deploy" / "serve_config.cluster-test.yaml"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


class FakeServer:
    """A loopback HTTP server answering GET path -> (body text) from a mutable dict."""

    def __init__(self) -> None:
        self.routes: dict[str, str] = {}
        self.sequences: dict[str, list[str]] = {}  # answers served in turn, one per GET; the last one stays
        routes, sequences = self.routes, self.sequences

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                queue = sequences.get(self.path)
                body = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else routes.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write((body or "not found").encode())

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as srv:
        yield srv


def deployment(target: int, running: int, *, nodes: tuple[str, ...] = ("n1",)) -> dict[str, Any]:
    replicas = [{"state": "RUNNING", "node_id": nodes[i % len(nodes)]} for i in range(running)]
    return {"status": "HEALTHY", "target_num_replicas": target, "replicas": replicas + [{"state": "STARTING"}]}


def applications(**deployments: dict[str, Any]) -> str:
    colm = {"status": "RUNNING", "message": "", "deployments": deployments}
    return json.dumps({"applications": {"colm": colm, "upstream": {"status": "RUNNING", "deployments": {}}}})


APPS_PATH = "/api/serve/applications/"


def test_wait_passes_when_every_target_runs(server: FakeServer) -> None:
    server.routes[APPS_PATH] = applications(Router=deployment(2, 2), ClientModel=deployment(1, 1))
    result = run("wait", "--dashboard", server.url, "--timeout", "5", "--interval", "0.1")
    assert result.returncode == 0, result.stderr
    assert "all applications RUNNING" in result.stdout


def test_wait_times_out_naming_the_lagging_deployment(server: FakeServer) -> None:
    server.routes[APPS_PATH] = applications(Router=deployment(3, 2))
    result = run("wait", "--dashboard", server.url, "--timeout", "0.5", "--interval", "0.1")
    assert result.returncode == 1
    assert "colm/Router: 2 running, target 3, want 3" in result.stderr


def test_wait_with_expect_requires_the_new_size(server: FakeServer) -> None:
    server.routes[APPS_PATH] = applications(Router=deployment(2, 2))
    result = run("wait", "--dashboard", server.url, "--expect", "Router=1", "--timeout", "0.5", "--interval", "0.1")
    assert result.returncode == 1
    assert "want 1" in result.stderr
    ok = run("wait", "--dashboard", server.url, "--expect", "Router=2", "--timeout", "2", "--interval", "0.1")
    assert ok.returncode == 0, ok.stderr


def test_wait_reports_a_deploy_failure(server: FakeServer) -> None:
    server.routes[APPS_PATH] = json.dumps({"applications": {"colm": {
        "status": "DEPLOY_FAILED", "message": "ImportError: no module colm_serve.app", "deployments": {}}}})
    started = time.monotonic()
    result = run("wait", "--dashboard", server.url, "--timeout", "600", "--interval", "0.1")
    assert result.returncode == 1
    assert "app colm is DEPLOY_FAILED: ImportError" in result.stderr
    assert time.monotonic() - started < 60, "a failed deploy should not wait out the timeout"


def test_replicated_lists_deployments_with_two_or_more(server: FakeServer) -> None:
    server.routes[APPS_PATH] = applications(Router=deployment(2, 2), **{"proxy-local": deployment(2, 2)},
                                            ClientModel=deployment(1, 1))
    result = run("replicated", "--dashboard", server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Router", "proxy-local"]
    server.routes[APPS_PATH] = applications(ClientModel=deployment(1, 1))
    assert run("replicated", "--dashboard", server.url).returncode == 1


def actor(deployment_name: str, node: str, *, app: str = "colm", state: str = "ALIVE") -> dict[str, Any]:
    return {"name": f"SERVE_REPLICA::{app}#{deployment_name}#{node}x", "state": state, "node_id": node,
            "class_name": f"ServeReplica:{app}:{deployment_name}"}


def test_spread_requires_alive_replicas_on_two_nodes(tmp_path: Path) -> None:
    actors = tmp_path / "actors.json"
    actors.write_text(json.dumps([
        actor("Router", "aaa"), actor("Router", "bbb"),
        actor("proxy-local", "aaa"), actor("proxy-local", "bbb", state="DEAD"),
        actor("Router", "ccc", app="other"), {"name": "", "state": "ALIVE", "node_id": "aaa"},
    ]))
    ok = run("spread", "--actors", str(actors), "--deployment", "Router")
    assert ok.returncode == 0, ok.stderr
    assert "colm/Router: replicas on 2 nodes" in ok.stdout
    bad = run("spread", "--actors", str(actors), "--deployment", "Router", "--deployment", "proxy-local")
    assert bad.returncode == 1
    assert "colm/proxy-local: ALIVE replicas on 1 node(s)" in bad.stderr


def test_nodes_counts_alive_nodes(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.json"
    nodes.write_text(json.dumps([{"node_id": "a" * 20, "state": "ALIVE"}, {"node_id": "b" * 20, "state": "DEAD"}]))
    assert run("nodes", "--nodes", str(nodes), "--min-nodes", "1").returncode == 0
    result = run("nodes", "--nodes", str(nodes))
    assert result.returncode == 1
    assert "1 ALIVE Ray node(s), want 2+" in result.stderr


RAYLET = "/venv/ray/core/src/ray/raylet/raylet --node-ip-address={ip} --gcs-address=127.0.0.1:6380 --node-name={ip}"


def _loopback(tmp_path: Path, *, node_ip: str = "127.0.0.1", process_ip: str = "127.0.0.1",
              extra: str = "") -> subprocess.CompletedProcess[str]:
    nodes, processes = tmp_path / "nodes.json", tmp_path / "processes.txt"
    nodes.write_text(json.dumps([{"node_id": "a" * 20, "state": "ALIVE", "node_ip": node_ip}]))
    processes.write_text("\n".join(["bash", RAYLET.format(ip=process_ip), "python -m http.server --address 0.0.0.0", extra]))
    return run("loopback", "--nodes", str(nodes), "--processes", str(processes))


def test_loopback_passes_when_every_ray_address_is_127_0_0_1(tmp_path: Path) -> None:
    result = _loopback(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "every address on 127.0.0.1" in result.stdout


@pytest.mark.parametrize(("where", "kwargs", "named"), [
    ("node", {"node_ip": "192.0.2.2"}, "node_ip 192.0.2.2"),
    ("raylet", {"process_ip": "10.0.0.5"}, "--node-ip-address=10.0.0.5"),
    ("worker", {"extra": "ray::IDLE default_worker.py --gcs-address=192.0.2.2:6380"}, "--gcs-address=192.0.2.2:6380"),
])
def test_loopback_names_an_address_off_loopback(tmp_path: Path, where: str, kwargs: dict, named: str) -> None:
    result = _loopback(tmp_path, **kwargs)
    assert result.returncode == 1
    assert "Ray addresses off loopback" in result.stderr and named in result.stderr, where


def test_loopback_with_no_ray_process_proves_nothing(tmp_path: Path) -> None:
    (tmp_path / "nodes.json").write_text(json.dumps([{"node_id": "a" * 20, "node_ip": "127.0.0.1"}]))
    (tmp_path / "processes.txt").write_text("bash\n")
    result = run("loopback", "--nodes", str(tmp_path / "nodes.json"), "--processes", str(tmp_path / "processes.txt"))
    assert result.returncode == 1 and "nothing to check" in result.stderr


def metrics(**counts: float) -> str:
    lines = ["# HELP ray_serve_deployment_request_counter_total The number of queries",
             "# TYPE ray_serve_deployment_request_counter_total counter"]
    for name, value in counts.items():
        lines.append(f'ray_serve_deployment_request_counter_total{{application="colm",deployment="{name}",'
                     f'replica="{name}#x",route="/",SessionName="s"}} {value}')
    lines.append('ray_serve_deployment_request_counter_total{application="upstream",deployment="Router",replica="r"} 9.0')
    return "\n".join(lines) + "\n"


def test_served_requires_requests_on_every_node() -> None:
    with FakeServer() as head, FakeServer() as worker:
        head.routes["/metrics"] = metrics(Router=5.0, **{"proxy-local": 2.0})
        worker.routes["/metrics"] = metrics(Router=3.0)
        args = ["served", "--metrics", f"{head.url}/metrics", "--metrics", f"{worker.url}/metrics",
                "--deployment", "Router", "--timeout", "0.3", "--interval", "0.1"]
        ok = run(*args)
        assert ok.returncode == 0, ok.stderr
        assert "answered requests on all 2 nodes" in ok.stdout
        bad = run(*args, "--deployment", "proxy-local")
        assert bad.returncode == 1
        assert f"{worker.url}/metrics: colm/proxy-local answered no requests" in bad.stderr


def test_served_reports_an_unreachable_node() -> None:
    with FakeServer() as head:
        head.routes["/metrics"] = metrics(Router=1.0)
        result = run("served", "--metrics", f"{head.url}/metrics", "--metrics", "http://127.0.0.1:9/metrics",
                     "--deployment", "Router", "--timeout", "0", "--interval", "0.1")
    assert result.returncode == 1
    assert "http://127.0.0.1:9/metrics: not reachable" in result.stderr


def test_scaled_config_overrides_replicas_and_stays_valid(tmp_path: Path) -> None:
    out = tmp_path / "up.yaml"
    result = run("scaled-config", "--config", str(CLUSTER_CONFIG), "--out", str(out), "--replicas", "3",
                 "--deployment", "Router", "--deployment", "proxy-local")
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(out.read_text())
    colm = next(a for a in doc["applications"] if a["name"] == "colm")
    assert colm["deployments"] == [{"name": "Router", "num_replicas": 3}, {"name": "proxy-local", "num_replicas": 3}]
    original = yaml.safe_load(CLUSTER_CONFIG.read_text())
    assert colm["args"] == next(a for a in original["applications"] if a["name"] == "colm")["args"]
    assert validate_serve_config(doc)


def test_scaled_config_rejects_an_unknown_app(tmp_path: Path) -> None:
    result = run("scaled-config", "--config", str(CLUSTER_CONFIG), "--out", str(tmp_path / "x.yaml"),
                 "--app", "nope", "--replicas", "3", "--deployment", "Router")
    assert result.returncode == 1
    assert "no application 'nope'" in result.stderr


def test_scaled_config_puts_chosen_deployments_under_serve_autoscaling(tmp_path: Path) -> None:
    out = tmp_path / "auto.yaml"
    result = run("scaled-config", "--config", str(CLUSTER_CONFIG), "--out", str(out), "--replicas", "1",
                 "--deployment", "Router", "--deployment", "proxy-local", "--autoscale", "Router",
                 "--min-replicas", "1", "--max-replicas", "2", "--target-ongoing-requests", "1")
    assert result.returncode == 0, result.stderr
    colm = next(a for a in yaml.safe_load(out.read_text())["applications"] if a["name"] == "colm")
    by_name = {d["name"]: d for d in colm["deployments"]}
    assert by_name["proxy-local"] == {"name": "proxy-local", "num_replicas": 1}
    assert by_name["Router"]["num_replicas"] == "auto"
    assert by_name["Router"]["autoscaling_config"] == {
        "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1.0, "upscale_delay_s": 5, "downscale_delay_s": 30}
    assert validate_serve_config(yaml.safe_load(out.read_text()))


def router_state(status: str, trigger: str, target: int, running: int) -> str:
    dep = deployment(target, running)
    return applications(Router={**dep, "status": status, "status_trigger": trigger})


def play(server: FakeServer, states: list[str], polls_each: int = 2) -> None:
    """Serves each state for `polls_each` polls, as Serve's REST API would over a scale-up; by
    polls, not by time, so a slow host cannot make the check miss a state."""
    server.sequences[APPS_PATH] = [state for state in states for _ in range(polls_each)]


def autoscaled(server: FakeServer, states: list[str], replicas: int, timeout_s: float) -> subprocess.CompletedProcess[str]:
    play(server, states)
    return run("autoscaled", "--dashboard", server.url, "--deployment", "Router", "--replicas", str(replicas),
               "--timeout", str(timeout_s), "--interval", "0.1")


def test_autoscaled_follows_an_autoscaler_scale_up(server: FakeServer) -> None:
    result = autoscaled(server, [router_state("HEALTHY", "CONFIG_UPDATE_COMPLETED", 1, 1),
                                 router_state("UPSCALING", "AUTOSCALING", 2, 1),
                                 router_state("HEALTHY", "UPSCALE_COMPLETED", 2, 2)], replicas=2, timeout_s=20)
    assert result.returncode == 0, result.stderr
    assert "status UPSCALING, trigger AUTOSCALING, target 2, running 1" in result.stdout
    assert "autoscaler brought colm/Router to 2 replica(s)" in result.stdout


def test_autoscaled_does_not_credit_a_config_change(server: FakeServer) -> None:
    result = autoscaled(server, [router_state("UPDATING", "CONFIG_UPDATE_STARTED", 2, 1),
                                 router_state("HEALTHY", "CONFIG_UPDATE_COMPLETED", 2, 2)], replicas=2, timeout_s=1.5)
    assert result.returncode == 1
    assert "did not autoscale to 2 replicas" in result.stderr
    assert "CONFIG_UPDATE_COMPLETED" in result.stderr


def test_autoscaled_down_needs_a_downscale_not_the_earlier_upscale(server: FakeServer) -> None:
    stale = autoscaled(server, [router_state("HEALTHY", "UPSCALE_COMPLETED", 2, 2),
                                router_state("HEALTHY", "CONFIG_UPDATE_COMPLETED", 1, 1)], replicas=1, timeout_s=1.5)
    assert stale.returncode == 1, stale.stdout
    down = autoscaled(server, [router_state("DOWNSCALING", "AUTOSCALING", 1, 2),
                               router_state("HEALTHY", "DOWNSCALE_COMPLETED", 1, 1)], replicas=1, timeout_s=10)
    assert down.returncode == 0, down.stderr
    assert "autoscaler brought colm/Router to 1 replica(s)" in down.stdout


def test_autoscaled_names_a_missing_deployment(server: FakeServer) -> None:
    server.routes[APPS_PATH] = applications(ClientModel=deployment(1, 1))
    result = run("autoscaled", "--dashboard", server.url, "--deployment", "Router", "--replicas", "2", "--timeout", "1")
    assert result.returncode == 1
    assert "colm/Router not found" in result.stderr


STATS_HEADER = "Type,Name,Request Count,Failure Count,Median Response Time\n"


@pytest.mark.parametrize(("rows", "code", "message"), [
    ("POST,/v1/chat/completions,12,0,900\n,Aggregated,12,0,900\n", 0, "locust: 12 requests, 0 failures"),
    ("POST,/v1/chat/completions,12,1,900\n,Aggregated,12,1,900\n", 1, "12 requests, 1 failures"),
    (",Aggregated,0,0,0\n", 1, "0 requests"),
    ("POST,/v1/chat/completions,1,0,900\n", 1, "no Aggregated row"),
])
def test_locust_ok(tmp_path: Path, rows: str, code: int, message: str) -> None:
    (tmp_path / "run_stats.csv").write_text(STATS_HEADER + rows)
    result = run("locust-ok", "--csv", str(tmp_path / "run"))
    assert result.returncode == code
    assert message in (result.stdout + result.stderr)


def test_cluster_test_script_is_valid_bash() -> None:
    script = ROOT / "scripts" / "cluster_test.sh"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text()
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


RECORDS_HEADER = "start_time,app,persona,model,stream,turn,question_id,ok,e2e_ms\n"


@pytest.mark.parametrize(("records", "code", "message"), [
    ("1,chat-0,chat,colm,True,0,q1,True,190553\n2,math-0,math,colm,False,0,q2,True,190327\n", 0,
     "locust: 2 requests, 0 failures"),
    ("1,chat-0,chat,colm,True,0,q1,True,190553\n2,math-0,math,colm,False,0,q2,False,190327\n", 1,
     "2 requests, 1 failures"),
    ("", 1, "0 requests"),
])
def test_locust_ok_counts_answers_that_finished_in_the_stop_timeout(tmp_path: Path, records: str, code: int,
                                                                     message: str) -> None:
    """Locust's own CSV shows none of them (it stops counting at the run time); the load test's
    record of every request has them."""
    (tmp_path / "run_stats.csv").write_text(STATS_HEADER + ",Aggregated,0,0,0\n")
    (tmp_path / "run_colm_requests.csv").write_text(RECORDS_HEADER + records)
    result = run("locust-ok", "--csv", str(tmp_path / "run"))
    assert result.returncode == code
    assert message in (result.stdout + result.stderr)
