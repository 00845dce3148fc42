"""Run an untrusted program (a model's code plus its tests or examples) in a child process that is
bounded in time, memory and reach, and tell whether it ran to its end.

Each run gets a fresh temporary folder as its working directory (removed afterwards), its
own session and process group (all of it killed at the end or on timeout), the limits and
network namespace of `isolation.py`, a minimal environment, and the audit hook of
`child_guard.py`. The interpreter runs with -I -S: the standard library only, no
site-packages (HumanEval, MBPP and the cascade's examples check need nothing else). Used by the
graders of clients/eval and by cascade's draft check in the router. Many runs proceed at once, up to the
sandbox's concurrency.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from colm_serve.collab.checks.isolation import Limits, child_setup, network_namespace_available

log = logging.getLogger(__name__)

GUARD = Path(__file__).with_name("child_guard.py")
TAIL_CHARS = 2000
Reason = Literal["passed", "failed", "timeout", "error"]
# child_guard's exit status: 4 is an assertion that failed; other statuses are errors.
REASONS: dict[int, Reason] = {0: "passed", 4: "failed", -signal.SIGXCPU: "timeout"}


@dataclass(frozen=True)
class RunResult:
    """How a run ended. `pid` is also its process group id, gone once the result exists."""

    passed: bool
    reason: Reason
    stderr_tail: str
    pid: int | None = None

    def summary(self) -> str:
        """How it ended, with the last line of its stderr (the exception, if any) when it failed."""
        last = self.stderr_tail.strip().splitlines()[-1:]
        return self.reason if self.passed or not last else f"{self.reason}: {last[0][:300]}"


class Sandbox:
    """Runs programs under `limits`, at most `concurrency` at a time. Create it inside the
    event loop that uses it (its semaphore belongs to one loop)."""

    def __init__(self, *, limits: Limits | None = None, concurrency: int | None = None) -> None:
        self.limits = limits or Limits()
        self._slots = asyncio.Semaphore(concurrency or os.cpu_count() or 1)
        self._netns = network_namespace_available()

    async def run(self, program: str) -> RunResult:
        """Run `program` (Python source) to its end, a failure, or the timeout."""
        async with self._slots:
            folder = tempfile.mkdtemp(prefix="colm-sandbox-")
            try:
                Path(folder, "program.py").write_text(program, encoding="utf-8")
                return await self._run_in(folder)
            finally:
                _remove(folder)

    async def _run_in(self, folder: str) -> RunResult:
        env = {"HOME": folder, "TMPDIR": folder, "PYTHONDONTWRITEBYTECODE": "1",
               "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", "-B", str(GUARD), "program.py",
            cwd=folder, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, preexec_fn=child_setup(self.limits, new_netns=self._netns),
        )
        tail = asyncio.create_task(_read_tail(proc.stderr))
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), self.limits.timeout_s)
        except TimeoutError:
            timed_out = True
        finally:
            _kill_group(proc.pid)  # also the stragglers of a program that ended
            await proc.wait()
        stderr = await tail
        reason: Reason = "timeout" if timed_out else REASONS.get(proc.returncode, "error")
        return RunResult(passed=reason == "passed", reason=reason, stderr_tail=stderr, pid=proc.pid)


async def _read_tail(stream: asyncio.StreamReader | None) -> str:
    """Drain the child's stderr, keeping only its end, so a chatty program costs no memory."""
    kept = b""
    while stream is not None and (chunk := await stream.read(1 << 16)):
        kept = (kept + chunk)[-4 * TAIL_CHARS:]
    return kept.decode("utf-8", "replace")[-TAIL_CHARS:]


def _kill_group(pgid: int) -> None:
    """SIGKILL the run's whole process group; the group being gone already is the goal."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        log.debug("sandbox: process group %d already gone", pgid)


def _remove(folder: str) -> None:
    """Delete the run's folder even where the program took its own permissions away."""
    os.chmod(folder, 0o700)
    for here, dirs, _ in os.walk(folder):
        for name in dirs:
            path = os.path.join(here, name)
            if not os.path.islink(path):
                os.chmod(path, 0o700)
    shutil.rmtree(folder)


def run_sync(program: str, *, limits: Limits | None = None) -> RunResult:
    """Run one program from synchronous code (a script, a test)."""

    async def once() -> RunResult:
        return await Sandbox(limits=limits, concurrency=1).run(program)

    return asyncio.run(once())
