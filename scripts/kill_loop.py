"""The 5-kill proof: a killed ClientModel replica never leaves an engine process behind.

    make kill-loop                     # python -m scripts.kill_loop, from the repository root
    python -m scripts.kill_loop [--kills 5] [--url http://127.0.0.1:8000] [--deployment ClientModel]

Run it against a running app (`make serve` in another shell) on the same host: it connects to
that Ray cluster as a driver (`ray.init(address="auto")`) and starts nothing. Each round finds
the live replica, its pid and every process below it (vLLM's EngineCore and what it started),
kills the replica the way the fault tests do (`ray.kill`, no restart: Serve must replace it),
and waits until none of those processes, no member of the replica's process group (the reaper's
watcher among them) and no orphaned `VLLM::` process is left. It prints one line, then waits for
Serve's new replica and for a `colm-client` request to succeed before the next kill.

Exit status: 0 every kill was clean; 1 an engine process outlived its replica; 2 a replica did
not lead its own process group (the app runs without the group reaper), or a kill or a recovery
failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field

import psutil

from colm_serve.client_model.reaper import members
from tests.processes import orphaned_engines
from tests.reliability.replicas import alive_replicas, kill_replica, wait_for_new_replica
from tests.reliability.test_replica_faults import PROBE, RECOVERY_S, _recovered

REAPED_S = 30.0  # the watcher polls every 0.5 s, then gives vLLM 5 s to exit on SIGTERM


@dataclass
class Round:
    replica: str
    pid: int
    isolated: bool  # the replica led its own process group, as the reaper's `guard` makes it
    below: int  # processes below the replica just before the kill
    left: list[str] = field(default_factory=list)
    reaped_s: float | None = None
    recovered_s: float | None = None
    error: str = ""

    @property
    def clean(self) -> bool:
        return self.isolated and not self.left and not self.error


def replica_pid(name: str) -> int:
    """The replica's pid on this host (its processes are read from this host's process table)."""
    import ray
    from ray.util.state import list_actors

    found = list_actors(filters=[("name", "=", name), ("state", "=", "ALIVE")])
    if len(found) != 1 or not found[0].pid:
        raise RuntimeError(f"replica {name}: expected one live actor with a pid, found {found}")
    if found[0].node_id != ray.get_runtime_context().get_node_id():
        raise RuntimeError(f"replica {name} runs on another node; run this on node {found[0].node_id}")
    return found[0].pid


def _alive(proc: psutil.Process) -> bool:
    try:  # is_running() compares the create time: a reused pid is not the process
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def leftovers(pid: int, below: list[psutil.Process]) -> list[str]:
    """What of the killed replica still runs: its former descendants, its group, orphaned engines."""
    procs = [p for p in below if _alive(p)] + members(pid)  # the group's id is the replica's pid
    found = {p.pid: _describe(p) for p in procs}
    found.update((o, f"{o} (orphaned VLLM:: process)") for o in orphaned_engines() if o not in found)
    return sorted(found.values())


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:60]}"
    except psutil.NoSuchProcess:
        return f"{proc.pid} (exited while listed)"


def one_kill(deployment: str) -> Round:
    """Kills the first live replica and waits for everything below it to go."""
    names = alive_replicas(deployment)
    if not names:
        raise RuntimeError(f"no live {deployment} replica")
    pid = replica_pid(names[0])
    below = psutil.Process(pid).children(recursive=True)
    rnd = Round(names[0], pid, isolated=os.getpgid(pid) == pid, below=len(below))
    killed = kill_replica(deployment)  # the first live replica by name, as looked up above
    if killed != rnd.replica:
        raise RuntimeError(f"meant to kill {rnd.replica}, killed {killed}")
    t0 = time.monotonic()
    while (left := leftovers(pid, below)) and time.monotonic() - t0 < REAPED_S:
        time.sleep(0.5)  # polling the process table
    rnd.left, rnd.reaped_s = left, time.monotonic() - t0
    return rnd


def kill_loop(*, url: str, kills: int = 5, deployment: str = "ClientModel") -> list[Round]:
    """Kills the deployment's replica `kills` times in a row; needs a Ray driver connection.
    A failed kill or recovery ends the loop; it is reported in the last round's `error`."""
    _recovered(url, PROBE["ClientModel"])  # never kill a replica that is still starting
    rounds: list[Round] = []
    for n in range(1, kills + 1):
        try:
            rounds.append(one_kill(deployment))
            wait_for_new_replica(deployment, killed=rounds[-1].replica, timeout_s=RECOVERY_S)  # clears orphans too
            rounds[-1].recovered_s = _recovered(url, PROBE["ClientModel"])  # a colm-client request
        except (RuntimeError, AssertionError, psutil.Error) as exc:  # reported; the run exits 2
            if len(rounds) < n:
                rounds.append(Round("?", 0, isolated=False, below=0))
            rounds[-1].error = f"{type(exc).__name__}: {exc}"
        print(f"kill {n}/{kills}: {summary(rounds[-1])}", flush=True)
        if rounds[-1].error:
            break
    return rounds


def summary(rnd: Round) -> str:
    if not rnd.pid:
        return f"FAILED before the kill: {rnd.error}"
    group = "own process group" if rnd.isolated else "NOT in its own process group"
    text = f"{rnd.replica} pid {rnd.pid} ({rnd.below} processes below it, {group})"
    if rnd.reaped_s is not None:
        text += f": LEFT after {rnd.reaped_s:.0f} s: {rnd.left}" if rnd.left else f": all gone after {rnd.reaped_s:.1f} s"
    if rnd.recovered_s is not None:
        text += f"; colm-client answered {rnd.recovered_s:.0f} s after the new replica came up"
    return text + (f"; FAILED {rnd.error}" if rnd.error else "")


def verdict(rounds: list[Round], kills: int) -> int:
    orphans = sum(bool(r.left) for r in rounds)
    if orphans:
        print(f"FAIL: {orphans} of {len(rounds)} kills left engine processes behind")
        return 1
    if len(rounds) < kills or not all(r.clean for r in rounds):
        print(f"INCONCLUSIVE: {sum(r.clean for r in rounds)} of {kills} kills were clean and complete")
        return 2
    print(f"PASS: {kills} kills, no engine process outlived its replica")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--deployment", default="ClientModel")
    args = parser.parse_args(argv)
    import ray

    ray.init(address="auto", log_to_driver=False, logging_level="ERROR")
    try:
        return verdict(kill_loop(url=args.url, kills=args.kills, deployment=args.deployment), args.kills)
    finally:
        ray.shutdown()  # a driver connection only: the app keeps running


if __name__ == "__main__":
    sys.exit(main())
