"""scripts/cluster_test.sh end to end, with fake `ray`, `serve`, `locust`, `curl` on PATH.

The real script starts Ray and vLLM, which only the lead runs. Here every command it calls is
a small fake that logs its arguments, and Serve's REST API and the nodes' metrics endpoints
are real local HTTP servers, so the script's control flow, flags and checks run for real.
PATH holds only the fakes and the system directories, so no real `ray stop` can be reached.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster_test.sh"
DEPLOYMENTS = ("Router", "proxy-local")

FAKES = {
    "ray": r"""
echo "ray $*" >> "$FAKE_STATE/calls.log"
case "$1 ${2:-}" in
  "list nodes") echo '[{"node_id": "head0000000000", "state": "ALIVE", "node_ip": "127.0.0.1"}, {"node_id": "worker00000000", "state": "ALIVE", "node_ip": "127.0.0.1"}]' ;;
  "list actors") cat "$FAKE_STATE/actors.json" ;;
esac
""",
    "serve": r"""
echo "serve $*" >> "$FAKE_STATE/calls.log"
case "$1" in
  deploy) cp "$2" "$FAKE_STATE/deployed.yaml"; cp "$2" "$FAKE_STATE/deploy-$(wc -l < "$FAKE_STATE/calls.log").yaml" ;;
  status) echo "applications: {colm: {status: RUNNING}}" ;;
esac
""",
    "locust": r"""
echo "locust $*" >> "$FAKE_STATE/calls.log"
while [ $# -gt 0 ]; do
  if [ "$1" = --csv ]; then csv=$2; fi
  shift
done
printf 'Type,Name,Request Count,Failure Count\nPOST,/v1/chat/completions,8,%s\n,Aggregated,8,%s\n' \
  "$FAKE_FAILURES" "$FAKE_FAILURES" > "${csv}_stats.csv"
[ "$FAKE_FAILURES" = 0 ]
""",
    "curl": 'echo "curl $*" >> "$FAKE_STATE/calls.log"; echo \'{"object": "list", "data": []}\'\n',
    "sleep": 'echo "sleep $*" >> "$FAKE_STATE/calls.log"\n',
    "pgrep": '[ "$FAKE_OTHER_RAY" = 1 ]\n',
    "ps": 'echo "/x/raylet --node-ip-address=$FAKE_NODE_IP --gcs-address=127.0.0.1:6380"\n',
    "colm-serve": f'exec "{sys.executable}" -m colm_serve.cli "$@"\n',
    "python": f'exec "{sys.executable}" "$@"\n',
}


class Server:
    def __init__(self, respond: Callable[[str], str | None]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                body = respond(self.path)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write((body or "").encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def autoscaler(state: Path, seen: dict[str, int]) -> tuple[int, int, str, str]:
    """(target, running, status, trigger) of a `num_replicas: auto` router, as Serve's
    autoscaler would report it: idle at 1, up to 2 once the ramp's Locust starts, back to 1
    once the script has recorded the scaled-up `serve status`. The first poll of each phase
    sees the change in progress, the later ones see it completed."""
    log = (state / "calls.log").read_text().splitlines()
    locusts = [i for i, c in enumerate(log) if c.startswith("locust")]
    phase = "idle"
    if len(locusts) == 3:  # spread, scale, ramp
        phase = "down" if any(c.startswith("serve status") for c in log[locusts[2]:]) else "up"
    seen[phase] = seen.get(phase, 0) + 1
    settled = seen[phase] > 1
    return {
        "idle": (1, 1, "HEALTHY", "CONFIG_UPDATE_COMPLETED"),
        "up": (2, 2, "HEALTHY", "UPSCALE_COMPLETED") if settled else (2, 1, "UPSCALING", "AUTOSCALING"),
        "down": (1, 1, "HEALTHY", "DOWNSCALE_COMPLETED") if settled else (1, 2, "DOWNSCALING", "AUTOSCALING"),
    }[phase]


def serve_applications(state: Path, seen: dict[str, int]) -> str:
    """Serve's REST answer for whatever the fake `serve deploy` last deployed."""
    deployed = state / "deployed.yaml"
    if not deployed.exists():
        return json.dumps({"applications": {}})
    colm = next(a for a in yaml.safe_load(deployed.read_text())["applications"] if a["name"] == "colm")
    overrides = {d["name"]: d["num_replicas"] for d in colm.get("deployments", [])}
    deployments = {}
    for name, n in ({name: overrides.get(name, 2) for name in DEPLOYMENTS} | {"ClientModel": 1}).items():
        target, running, status, trigger = autoscaler(state, seen) if n == "auto" else (n, n, "HEALTHY", "")
        deployments[name] = {"status": status, "status_trigger": trigger, "target_num_replicas": target,
                             "replicas": [{"state": "RUNNING"}] * running}
    return json.dumps({"applications": {"colm": {"status": "RUNNING", "deployments": deployments}}})


def node_metrics(path: str) -> str | None:
    if path != "/metrics":
        return None
    return "".join(f'ray_serve_deployment_request_counter_total{{application="colm",deployment="{d}",replica="r"}} 4.0\n'
                   for d in DEPLOYMENTS)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[dict[str, Any]]:
    state, bin_dir = tmp_path / "state", tmp_path / "bin"
    state.mkdir()
    bin_dir.mkdir()
    for name, body in FAKES.items():
        path = bin_dir / name
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    (state / "actors.json").write_text(json.dumps([
        {"name": f"SERVE_REPLICA::colm#{d}#{i}", "state": "ALIVE", "node_id": node}
        for d in DEPLOYMENTS for i, node in enumerate(("head0000000000", "worker00000000"))]))
    seen: dict[str, int] = {}
    servers = [Server(lambda p: serve_applications(state, seen) if p == "/api/serve/applications/" else None),
               Server(node_metrics), Server(node_metrics)]
    path = f"{bin_dir}:/usr/bin:/bin"
    assert shutil.which("ray", path=path) == str(bin_dir / "ray"), "a real ray must never be reachable here"
    env = {"PATH": path, "HOME": str(tmp_path), "TMPDIR": str(tmp_path), "VIRTUAL_ENV": "fake",
           "FAKE_STATE": str(state), "FAKE_FAILURES": "0", "FAKE_OTHER_RAY": "0", "FAKE_NODE_IP": "127.0.0.1",
           "COLM_CT_NETNS": "1",  # the fakes need no network namespace (tests/deploy/test_cluster_check.py: its check)
           "DASHBOARD_PORT": str(servers[0].port), "HEAD_METRICS_PORT": str(servers[1].port),
           "WORKER_METRICS_PORT": str(servers[2].port), "SCALE_LOAD_S": "600"}
    yield {"env": env, "state": state}
    for server in servers:
        server.close()


def run_script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)


def calls(state: Path) -> list[str]:
    return (state / "calls.log").read_text().splitlines()


def test_script_runs_the_whole_scenario(harness: dict[str, Any]) -> None:
    result = run_script(harness["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cluster test PASSED" in result.stdout
    log = calls(harness["state"])
    starts = [c for c in log if c.startswith("ray start")]
    assert len(starts) == 2
    assert "--head" in starts[0] and "--port=6380" in starts[0] and "--num-cpus=1" in starts[0]
    assert "--node-ip-address=127.0.0.1" in starts[0] and "--dashboard-host=127.0.0.1" in starts[0]
    assert "--address=127.0.0.1:6380" in starts[1] and "--num-cpus=1" in starts[1]
    deploys = [c for c in log if c.startswith("serve deploy")]
    assert deploys[0].startswith("serve deploy deploy/serve_config.cluster-test.yaml -a http://127.0.0.1:")
    assert [c.split()[2].rsplit("/", 1)[-1] for c in deploys[1:]] == ["scaled-up.yaml", "scaled-down.yaml", "autoscaling.yaml"]
    locusts = [c for c in log if c.startswith("locust")]
    assert len(locusts) == 3
    assert "--users 6 --spawn-rate 0.1" in locusts[2]
    assert all("-f loadtest/ --headless" in c and "--host http://127.0.0.1:8100" in c for c in locusts)
    assert log[-1] == "ray stop"
    assert "replicas on 2 nodes" in result.stdout
    assert "answered requests on all 2 nodes" in result.stdout

    # Scaling goes through `deployments:` replica overrides: up to 3, then down to 1.
    snapshots = sorted(harness["state"].glob("deploy-*.yaml"), key=lambda p: int(p.stem.split("-")[1]))
    sizes = []
    for snapshot in snapshots[1:]:
        colm = next(a for a in yaml.safe_load(snapshot.read_text())["applications"] if a["name"] == "colm")
        sizes.append({d["name"]: d["num_replicas"] for d in colm["deployments"]})
    assert sizes == [{"Router": 3, "proxy-local": 3}, {"Router": 1, "proxy-local": 1}, {"Router": "auto", "proxy-local": 1}]
    # The autoscaler, not a config change, moved the router: up under the ramp, down after it.
    assert "autoscaler brought colm/Router to 2 replica(s)" in result.stdout
    assert "autoscaler brought colm/Router to 1 replica(s)" in result.stdout


def test_a_ray_address_off_loopback_fails_the_script_and_ray_still_stops(harness: dict[str, Any]) -> None:
    result = run_script({**harness["env"], "FAKE_NODE_IP": "192.0.2.2"})
    assert result.returncode != 0
    assert "Ray addresses off loopback" in result.stderr and "--node-ip-address=192.0.2.2" in result.stderr
    assert "ray stop" in calls(harness["state"])
    assert not any(c.startswith("serve deploy") for c in calls(harness["state"]))


def test_failed_requests_fail_the_script_and_ray_still_stops(harness: dict[str, Any]) -> None:
    harness["env"]["FAKE_FAILURES"] = "2"
    result = run_script(harness["env"])
    assert result.returncode != 0
    assert "cluster test FAILED" in result.stderr
    assert calls(harness["state"])[-1] == "ray stop"
    assert not any(c.startswith("serve deploy") and "scaled" in c for c in calls(harness["state"]))


def test_script_refuses_to_run_beside_another_ray(harness: dict[str, Any]) -> None:
    harness["env"]["FAKE_OTHER_RAY"] = "1"
    result = run_script(harness["env"])
    assert result.returncode == 2
    assert "Another Ray instance runs on this host" in result.stderr
    assert not (harness["state"] / "calls.log").exists()  # no ray start, and no ray stop


def test_short_load_during_scaling_is_an_error(harness: dict[str, Any]) -> None:
    harness["env"]["SCALE_LOAD_S"] = "0"
    result = run_script(harness["env"])
    assert result.returncode != 0
    assert "the load ended before scaling finished" in result.stderr
    assert calls(harness["state"])[-1] == "ray stop"
