"""What the benchmarks run against: stub upstreams in their own processes, and the real app
(`colm-serve run` of a generated config, as `make serve` runs it) in its own Ray instance,
both stopped afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from colm_serve.launch import haproxy_pids, stop_haproxy

ROOT = Path(__file__).resolve().parents[1]
APP_URL = "http://127.0.0.1:8000"


def _wait(url: str, proc: subprocess.Popen, *, timeout_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}\n{tail}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)  # polling a process that is starting
    raise RuntimeError(f"{url} was not ready after {timeout_s:.0f} s")


class Stub:
    """`benchmarks.stub_upstream` on a port, in its own process."""

    def __init__(self, port: int, *, latency_s: float) -> None:
        self.port, self.latency_s = port, latency_s
        self.url = f"http://127.0.0.1:{port}/v1"

    def __enter__(self) -> "Stub":
        self._proc = subprocess.Popen([sys.executable, "-m", "benchmarks.stub_upstream", "--port", str(self.port),
                                       "--latency-s", str(self.latency_s)], cwd=ROOT)
        _wait(f"{self.url}/models", self._proc, timeout_s=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)


def gateway_config(*, servers: list[dict[str, Any]], keys: list[dict[str, Any]] | None = None,
                   router: dict[str, Any] | None = None) -> dict[str, Any]:
    """A gateway-only app (no client model): one specialist `s-<server>` per server."""
    specialists = [{"name": f"s-{s['name']}", "description": f"pass-through to {s['name']}", "server": s["name"],
                    "model": "stub", "price_in_per_m": 2.5, "price_out_per_m": 10.0} for s in servers]
    args: dict[str, Any] = {"client_model": None, "servers": servers, "specialists": specialists,
                            "reference_server": specialists[0]["name"], "accounting": {"store": "memory"}}
    if keys:
        args["auth"] = {"keys": keys}
    if router:
        args["router"] = router
    return {"proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": 8000, "request_timeout_s": 600},
            "applications": [{"name": "colm", "route_prefix": "/", "import_path": "colm_serve.app:build_app", "args": args}]}


class ServedApp:
    """`colm-serve run CONFIG` (what `make serve` runs: Serve's fast path, HAProxy) in its own
    session; `plain` gives Serve's default proxy instead and `env` adds to the environment.
    `ready` is a model id that must answer before the app counts as started (a client model's
    engine takes a minute or two). Refuses to start beside another app on port 8000."""

    def __init__(self, config: dict[str, Any], *, env: dict[str, str] | None = None, plain: bool = False,
                 ready: str | None = None, ready_key: str | None = None, start_timeout_s: float = 600) -> None:
        self.config, self.env, self.plain, self.ready, self.ready_key = config, env or {}, plain, ready, ready_key
        self.start_timeout_s = start_timeout_s
        self.url = APP_URL

    def __enter__(self) -> "ServedApp":
        try:
            httpx.get(f"{APP_URL}/v1/models", timeout=2)
            raise RuntimeError("something already serves 127.0.0.1:8000; stop it first")
        except httpx.HTTPError:
            pass
        self._dir = tempfile.TemporaryDirectory(prefix="colm-bench-")
        path = Path(self._dir.name) / "serve_config.yaml"
        path.write_text(yaml.safe_dump(self.config))
        self.log = Path(self._dir.name) / "serve.log"
        self._haproxy_before = haproxy_pids()
        command = [str(Path(sys.executable).with_name("colm-serve")), "run", str(path), *(["--plain"] if self.plain else [])]
        self._proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **self.env},
                                      stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait(f"{APP_URL}/v1/models", self._proc, timeout_s=self.start_timeout_s, log=self.log)
            if self.ready:
                _wait_answer(self.ready, self._proc, key=self.ready_key, timeout_s=self.start_timeout_s, log=self.log)
        except BaseException:  # an app that never started (or a Ctrl-C while it starts) is stopped all the same
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGINT)
            try:
                self._proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
        subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"], capture_output=True)
        stop_haproxy(haproxy_pids() - self._haproxy_before)
        self._dir.cleanup()


def _wait_answer(model: str, proc: subprocess.Popen, *, key: str | None, timeout_s: float, log: Path) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.post(f"{APP_URL}/v1/chat/completions", json=body, headers=headers, timeout=120).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(3)  # an engine that is still starting
    raise RuntimeError(f"{model} did not answer after {timeout_s:.0f} s")
