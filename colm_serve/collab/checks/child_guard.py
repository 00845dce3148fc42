"""Bootstrap of a sandboxed run: `python -I -S -B child_guard.py program.py`. Never imported.

It installs an audit hook (PEP 578) and then runs the program, so the program cannot:
use sockets, start or signal processes, write, rename, remove or chmod anything outside its
working folder, load ctypes, or raise its resource limits. Audit hooks are a seat belt,
not a wall (a determined program could find a way round); the walls are the parent's
rlimits, network namespace and process-group kill. The code run is a model's answer, not an
attacker's.

Exit status: 0 the program ran to its end; 4 AssertionError; 5 any other exception
(a refused operation included); 6 the program tried to exit early. Python's own 1 means
the guard itself failed.
"""

import os
import sys
import traceback

FORBIDDEN = frozenset({
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
    "resource.setrlimit", "resource.prlimit", "os.symlink", "os.link", "os.chroot",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "sys.remote_exec",
})
FORBIDDEN_IMPORTS = frozenset({"ctypes", "_ctypes", "_posixsubprocess"})
# event: the (path, dir_fd) argument positions it carries; a dir_fd of -1 or None is none.
PATH_EVENTS = {
    "os.remove": ((0, 1),), "os.rmdir": ((0, 1),), "os.mkdir": ((0, 2),),
    "os.chmod": ((0, 2),), "os.chown": ((0, 3),), "os.utime": ((0, 3),),
    "os.truncate": ((0, None),), "os.rename": ((0, 2), (1, 3)), "shutil.rmtree": ((0, 1),),
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
DEVICES = frozenset({"/dev/null"})


def _writes(args):
    """Whether an "open" event (path, mode, flags) opens for writing."""
    flags, mode = args[2], args[1]
    if isinstance(flags, int) and flags & WRITE_FLAGS:
        return True
    return isinstance(mode, str) and any(c in mode for c in "wax+")


def make_hook(root):
    """The audit hook, confining writes to `root` (the real path of the working folder)."""

    def inside(path, dir_fd=None):
        if isinstance(path, int):
            return True  # a descriptor already open; opening it was checked
        base = os.getcwd() if dir_fd in (None, -1) else os.readlink(f"/proc/self/fd/{dir_fd}")
        real = os.path.realpath(os.path.join(base, os.fsdecode(path)))
        return real in DEVICES or real == root or real.startswith(root + os.sep)

    def refuse(event, args):
        raise PermissionError(f"sandbox: {event}{args!r} is not allowed")

    def hook(event, args):
        if event in FORBIDDEN or event.startswith("socket."):
            refuse(event, args)
        if event == "import" and args[0] in FORBIDDEN_IMPORTS:
            refuse(event, args[:1])
        if event == "open" and _writes(args) and not inside(args[0]):
            refuse(event, args)
        if event in PATH_EVENTS:
            for at, fd_at in PATH_EVENTS[event]:
                if not inside(args[at], None if fd_at is None else args[fd_at]):
                    refuse(event, args)

    return hook


def refused(*_args, **_kwargs):
    """Stands in for the functions no audit event covers."""
    raise PermissionError("sandbox: not allowed")


def main():
    path = sys.argv[1]
    with open(path, encoding="utf-8") as source:
        text = source.read()
    import _posixsubprocess  # disarmed before the program can reach it

    _posixsubprocess.fork_exec = refused  # the one way to spawn that raises no audit event
    os._exit = refused  # an early os._exit(0) would otherwise look like a pass
    sys.argv = sys.argv[1:]
    sys.addaudithook(make_hook(os.path.realpath(os.getcwd())))
    # Like the official harnesses' exec(): __name__ is not "__main__", so an answer's
    # demo block does not run.
    try:
        exec(compile(text, path, "exec"), {"__name__": "__sandboxed__", "__builtins__": __builtins__})
    except AssertionError:
        traceback.print_exc()
        sys.exit(4)
    except SystemExit:
        traceback.print_exc()
        sys.exit(6)
    except BaseException:  # reported on stderr and by the exit status
        traceback.print_exc()
        sys.exit(5)


if __name__ == "__main__":
    main()
