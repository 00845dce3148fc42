"""The package tree reads as the request path, and dependencies point one way: down it.

api -> service -> collab -> accounting -> server_proxy -> client_model -> the shared kernel
(config, errors, protocol, outcome, deadline). The embedded stand-in server sits beside the
path: it may use the API layer and the client model, and nothing outside it imports it
(it has its own builder).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "colm_serve"
KERNEL = {"config", "errors", "protocol", "outcome", "deadline", "telemetry", "fairness"}
# Each layer may import itself, the kernel and the layers listed after it.
PATH = ["app", "api", "service", "collab", "accounting", "server_proxy", "client_model"]
STAND_IN_MAY_USE = {"api", "client_model"}
TOOLS = {"cli", "prepare", "deploy_config", "launch"}  # command-line utilities beside the app


def layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("colm_serve."):
            found.add(layer(node.module))
        elif isinstance(node, ast.Import):
            found |= {layer(a.name) for a in node.names if a.name.startswith("colm_serve.")}
    return found


def modules() -> list[tuple[str, Path]]:
    return [(p.relative_to(PACKAGE.parent).with_suffix("").as_posix().replace("/", "."), p) for p in PACKAGE.rglob("*.py")]


def allowed(own: str) -> set[str]:
    if own in KERNEL:
        return KERNEL
    if own == "stand_in":
        return KERNEL | STAND_IN_MAY_USE | {"stand_in"}
    if own in TOOLS:
        return KERNEL | TOOLS
    below = PATH[PATH.index(own):]
    return KERNEL | set(below)


@pytest.mark.parametrize(("name", "path"), modules(), ids=[m for m, _ in modules()])
def test_dependencies_point_down_the_request_path(name: str, path: Path) -> None:
    own = layer(name)
    assert own in KERNEL | TOOLS | set(PATH) | {"stand_in", "__init__"}, f"{name}: a new top-level room; add it to the layout"
    if own == "__init__":
        return
    wrong = imports(path) - allowed(own)
    assert not wrong, f"{name} ({own}) imports {sorted(wrong)}, which sit above it or beside it"


def test_the_layout_test_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from colm_serve.service import RouterService\nimport colm_serve.collab.pipeline\n")
    assert imports(bad) - allowed("server_proxy") == {"service", "collab"}
    assert "collab" not in allowed("stand_in") and "stand_in" not in allowed("api") and "stand_in" not in allowed("app")
