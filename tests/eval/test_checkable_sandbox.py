"""The sandbox runs untrusted code to its end or its limit, and nothing it tries gets out:
no network, no writes outside its folder, no processes, no memory beyond its cap, no
process left behind. Each refusal has a twin run outside the sandbox, or under a looser
limit, showing the same program does get out when nothing stops it."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from colm_serve.collab.checks.isolation import Limits, network_namespace_available
from colm_serve.collab.checks.sandbox import Sandbox, run_sync


def live_in_group(pgid: int) -> list[int]:
    """Processes of a process group that still exist and are not zombies (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue  # exited while we looked
            state, _ppid, group = stat.rsplit(")", 1)[1].split()[:3]
            if int(group) == pgid and state != "Z":
                found.append(int(entry.name))
    return found


def test_a_passing_and_a_failing_program() -> None:
    assert run_sync("assert sum([1, 2]) == 3\n").reason == "passed"
    failed = run_sync("assert sum([1, 2]) == 4\n")
    assert (failed.passed, failed.reason) == (False, "failed") and "AssertionError" in failed.stderr_tail


def test_an_endless_loop_is_killed_with_its_process_group() -> None:
    started = time.monotonic()
    result = run_sync("while True:\n    pass\n", limits=Limits(timeout_s=1.0))
    assert result.reason == "timeout" and not result.passed
    assert time.monotonic() - started < 10  # not the endless loop's forever, on a loaded host
    assert result.pid is not None and live_in_group(result.pid) == []


def test_a_chatty_endless_loop_keeps_only_a_short_tail() -> None:
    result = run_sync("import sys\nwhile True:\n    print('x' * 500, file=sys.stderr)\n", limits=Limits(timeout_s=1.0))
    assert result.reason == "timeout" and 0 < len(result.stderr_tail) <= 2000


CONNECT = "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')\n"


def test_a_socket_connection_never_arrives() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        program = CONNECT.format(port=listener.getsockname()[1])
        result = run_sync(program)
        assert result.reason == "error" and "socket" in result.stderr_tail
        with pytest.raises(TimeoutError):
            listener.accept()
        # The twin: outside the sandbox the same program does connect.
        subprocess.run([sys.executable, "-c", program], check=True, timeout=30)
        conn, _ = listener.accept()
        conn.close()


@pytest.mark.skipif(not network_namespace_available(), reason="no network namespace here (needs root)")
def test_the_child_has_its_own_network_namespace() -> None:
    result = run_sync("raise SystemError(open('/proc/net/dev').read())\n")
    interfaces = re.findall(r"^\s*(\w+):\s+\d", result.stderr_tail, re.M)
    assert interfaces == ["lo"]
    host = Path("/proc/net/dev").read_text()
    assert len(re.findall(r"^\s*(\w+):\s+\d", host, re.M)) > 1


def test_a_write_outside_its_folder_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    program = f"open({str(target)!r}, 'w').write('out')\n"
    result = run_sync(program)
    assert result.reason == "error" and "not allowed" in result.stderr_tail
    assert not target.exists()
    subprocess.run([sys.executable, "-c", program], check=True, timeout=30)
    assert target.read_text() == "out"


@pytest.mark.parametrize("program", [
    "import os\nos.rename('program.py', {target!r})\n",
    "import os\nos.mkdir({target!r})\n",
    "import shutil\nshutil.copy('program.py', {target!r})\n",
])
def test_other_ways_out_are_refused(tmp_path: Path, program: str) -> None:
    target = tmp_path / "escaped"
    assert run_sync(program.format(target=str(target))).reason == "error"
    assert not target.exists()


def test_it_may_write_in_its_own_folder_which_is_removed_afterwards() -> None:
    program = ("import os, tempfile\nopen('own.txt', 'w').write('x')\ntempfile.mkstemp()\n"
               "raise SystemError(os.getcwd())\n")
    result = run_sync(program)
    folder = result.stderr_tail.strip().splitlines()[-1].split(": ", 1)[1]
    assert "colm-sandbox-" in folder and not Path(folder).exists()


def test_a_fork_bomb_is_refused_at_its_first_fork() -> None:
    result = run_sync("import os\nwhile True:\n    os.fork()\n")
    assert result.reason == "error" and "os.fork" in result.stderr_tail
    assert result.pid is not None and live_in_group(result.pid) == []


@pytest.mark.parametrize("program", ["import subprocess\nsubprocess.run(['true'])\n", "import os\nos.system('true')\n",
                                     "import os\nos.kill(1, 0)\n", "import ctypes\n"])
def test_processes_signals_and_ctypes_are_refused(program: str) -> None:
    assert run_sync(program).reason == "error"


def test_four_gib_are_refused_under_the_memory_cap() -> None:
    program = "block = bytes(4 << 30)\n"  # calloc'd: the pages are never touched
    result = run_sync(program)
    assert result.reason == "error" and "MemoryError" in result.stderr_tail
    assert run_sync(program, limits=Limits(memory_bytes=16 << 30)).reason == "passed"


def test_an_early_exit_is_not_a_pass() -> None:
    assert run_sync("import sys\nsys.exit(0)\nassert False\n").reason == "error"
    assert run_sync("import os\nos._exit(0)\nassert False\n").reason == "error"


async def test_many_runs_at_once_respect_the_concurrency() -> None:
    box = Sandbox(concurrency=2)
    programs = ["import time\ntime.sleep(0.4)\n", "import time\ntime.sleep(0.4)\nassert False\n"] * 2
    started = time.monotonic()
    results = await asyncio.gather(*(box.run(p) for p in programs))
    assert [r.reason for r in results] == ["passed", "failed"] * 2
    assert time.monotonic() - started >= 0.8  # four 0.4 s runs, two at a time
