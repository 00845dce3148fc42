"""llama.cpp's C API, from the prebuilt CPU library that `llama-cpp-cffi` ships.

Only its compiled cffi module is loaded: the Python package around it pins transformers < 5 and
huggingface-hub < 0.29, so `make llama` installs it without dependencies and nothing of it but
the C library is imported here.

The library is built with GCC 14 and calls `__cxa_call_terminate`, which an older libstdc++
(Debian 12 has GCC 12's) lacks. Where it is missing, a one-function library that provides it is
compiled once and loaded first, so the dynamic linker finds the symbol there.
"""

from __future__ import annotations

import ctypes
import importlib.util
import subprocess
import threading
from pathlib import Path
from typing import Any

from colm_serve.config import DEFAULT_MODEL_DIR

PACKAGE = "llama-cpp-cffi==0.4.42"
_SHIM_SOURCE = """
#include <exception>
// Called only when an exception escapes a noexcept function: terminating is what GCC 14 does.
extern "C" __attribute__((visibility("default"))) void __cxa_call_terminate(void*) noexcept { std::terminate(); }
"""
_lock = threading.Lock()
_loaded: tuple[Any, Any] | None = None


def load(cache_dir: Path = DEFAULT_MODEL_DIR.parent) -> tuple[Any, Any]:
    """(lib, ffi) of llama.cpp's CPU build, its backend initialised; loaded once per process."""
    global _loaded
    with _lock:
        if _loaded is None:
            _provide_cxa_call_terminate(cache_dir / "lib")
            module = _extension()
            module.lib.llama_backend_init()
            _loaded = module.lib, module.ffi
        return _loaded


def _extension() -> Any:
    spec = importlib.util.find_spec("llama")  # a top-level package: found, not imported
    folders = list(spec.submodule_search_locations or []) if spec else []
    found = [p for folder in folders for p in Path(folder).glob("_llama_cpp_cpu.*.so")]
    if not found:
        raise RuntimeError(f"llama.cpp is not installed: `make llama` (pip install --no-deps {PACKAGE})")
    extension = importlib.util.spec_from_file_location("_llama_cpp_cpu", found[0])
    module = importlib.util.module_from_spec(extension)
    extension.loader.exec_module(module)
    return module


def _provide_cxa_call_terminate(lib_dir: Path) -> None:
    if hasattr(ctypes.CDLL("libstdc++.so.6"), "__cxa_call_terminate"):
        return
    shim = lib_dir / "libcxa_call_terminate.so"
    if not shim.exists():
        lib_dir.mkdir(parents=True, exist_ok=True)
        partial = shim.with_suffix(".partial")
        try:
            subprocess.run(["g++", "-shared", "-fPIC", "-O2", "-x", "c++", "-", "-o", str(partial)],
                           input=_SHIM_SOURCE, text=True, check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or exc
            raise RuntimeError(f"llama.cpp needs __cxa_call_terminate, and g++ could not build it: {detail}") from exc
        partial.rename(shim)
    ctypes.CDLL(str(shim), mode=ctypes.RTLD_GLOBAL)
