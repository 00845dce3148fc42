"""Every config we ship validates with the app's own models, and broken ones fail by name."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from colm_serve import cli
from colm_serve.deploy_config import APP_IMPORT_PATH, validate_file, validate_serve_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DEFAULT_CONFIG = ROOT / "serve_config.yaml"
DEPLOY_YAMLS = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


def kind_of(doc: dict[str, Any]) -> str:
    """What a YAML document under deploy/ is, so each kind gets its own check."""
    if doc.get("kind") == "RayService" or "applications" in doc:
        return "serve"
    if doc.get("kind") == "Secret":
        return "secret"
    if "available_node_types" in doc:
        return "ray-cluster"
    return "unknown"


def docs_of(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def default_doc() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def app(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in doc["applications"] if a["name"] == name)


def test_deploy_dir_has_the_documented_files() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in DEPLOY_YAMLS}
    assert {"serve_config.cloud.yaml", "serve_config.gpu.yaml", "serve_config.cluster-test.yaml",
            "k8s/rayservice.yaml", "k8s/secret.example.yaml", "cluster/ray-cluster.yaml"} <= names
    readme = (DEPLOY / "README.md").read_text()
    for name in names:
        assert name in readme, f"deploy/README.md does not document {name}"


@pytest.mark.parametrize("path", DEPLOY_YAMLS, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_yaml_under_deploy_is_a_known_kind(path: Path) -> None:
    kinds = {kind_of(doc) for doc in docs_of(path)}
    assert kinds and "unknown" not in kinds, f"{path}: add a check for this kind of file in tests/deploy"


SERVE_FILES = [p for p in DEPLOY_YAMLS if any(kind_of(d) == "serve" for d in docs_of(p))] + [DEFAULT_CONFIG]


@pytest.mark.parametrize("path", SERVE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_serve_config_validates(path: Path) -> None:
    lines = validate_file(path)
    ok_lines = [line for line in lines if ": ok (" in line]
    assert ok_lines, lines
    assert any("specialists" in line for line in ok_lines)


def colm_specialists(path: Path) -> list[dict[str, Any]]:
    """The specialists of every CoLM app in a file, a RayService's embedded config included."""
    found = []
    for doc in docs_of(path):
        if doc.get("kind") == "RayService":
            doc = yaml.safe_load(doc["spec"]["serveConfigV2"])
        for application in doc.get("applications", []):
            if application.get("import_path") == APP_IMPORT_PATH:
                found += application["args"]["specialists"]
    return found


@pytest.mark.parametrize("path", SERVE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_specialist_is_routed_alike_in_every_config(path: Path) -> None:
    """The embedding selector routes by description and examples: one name, one routing, in every file we ship."""
    reference = {s["name"]: (s["description"], s.get("examples", [])) for s in colm_specialists(DEFAULT_CONFIG)}
    specialists = colm_specialists(path)
    assert specialists
    for spec in specialists:
        if spec["name"] in reference:
            assert (spec["description"], spec.get("examples", [])) == reference[spec["name"]], f"{path}: {spec['name']}"


PRICE_KEYS = ("price_in_per_m", "price_cached_in_per_m", "price_out_per_m")
CLOUD_CONFIG = DEPLOY / "serve_config.cloud.yaml"


@pytest.mark.parametrize("path", SERVE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_specialist_is_priced_alike_in_every_config(path: Path) -> None:
    """One price table: a specialist costs what its cloud model lists, stand-in or not, so the
    default set-up's cost figures are the cloud's."""
    reference = {s["name"]: {k: s.get(k) for k in PRICE_KEYS} for s in colm_specialists(CLOUD_CONFIG)}
    for spec in colm_specialists(path):
        if spec["name"] in reference:
            assert {k: spec.get(k) for k in PRICE_KEYS} == reference[spec["name"]], f"{path}: {spec['name']}"


def test_validate_file_summarises_apps() -> None:
    lines = validate_file(DEFAULT_CONFIG)
    assert lines[0] == f"{DEFAULT_CONFIG}: serve config"
    assert "  app upstream: ok (upstream serving smollm2-local with smollm2-135m-instruct)" in lines
    assert "  app colm: ok (4 specialists, 1 servers, reference server gpt-conv)" in lines


def test_check_config_cli_prints_the_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(DEPLOY / "serve_config.cloud.yaml")]) == 0
    out = capsys.readouterr().out
    assert "app colm: ok (4 specialists, 3 servers, reference server gpt-conv)" in out


def test_cloud_config_mirrors_the_reference_specialists() -> None:
    args = app(yaml.safe_load((DEPLOY / "serve_config.cloud.yaml").read_text()), "colm")["args"]
    servers = {s["name"]: s for s in args["servers"]}
    assert {s["name"]: (s["server"], s["model"]) for s in args["specialists"]} == {
        "qwen-math": ("dashscope", "qwen-math-plus"),
        "gpt-conv": ("openai", "gpt-4o"),
        "qwen-coder": ("dashscope", "qwen-coder-plus"),
        "ds-creative": ("deepseek", "deepseek-chat"),
    }
    assert servers["openai"]["base_url"] == "https://api.openai.com/v1"
    assert servers["dashscope"]["base_url"] == "https://dashscope.aliyuncs.com/compatible-mode/v1"
    assert servers["deepseek"]["base_url"] == "https://api.deepseek.com/v1"
    assert {n: s["api_key_env"] for n, s in servers.items()} == {
        "openai": "OPENAI_API_KEY", "dashscope": "DASHSCOPE_API_KEY", "deepseek": "DEEPSEEK_API_KEY"}
    assert args["reference_server"] == "gpt-conv"
    assert all(s["price_in_per_m"] > 0 and s["price_out_per_m"] > 0 for s in args["specialists"])


def test_gpu_config_uses_gpus_and_autoscales() -> None:
    doc = yaml.safe_load((DEPLOY / "serve_config.gpu.yaml").read_text())
    colm = app(doc, "colm")["args"]
    client = colm["client_model"]
    assert "/" in client["engine"]["model"], "expected a Hugging Face repo id"
    assert client["deployment"]["num_gpus"] >= 1
    assert client["engine"]["tensor_parallel_size"] >= 1
    for deployment in (client["deployment"], colm["router"]["deployment"], colm["servers"][0]["deployment"]):
        scaling = deployment["autoscaling"]
        assert scaling["min_replicas"] < scaling["max_replicas"]


def test_cluster_test_config_replicates_router_and_proxy() -> None:
    colm = app(yaml.safe_load((DEPLOY / "serve_config.cluster-test.yaml").read_text()), "colm")["args"]
    assert colm["router"]["deployment"]["num_replicas"] == 2
    assert all(s["deployment"]["num_replicas"] == 2 for s in colm["servers"])


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value


def _colm_args(doc: dict[str, Any]) -> dict[str, Any]:
    return app(doc, "colm")["args"]


BROKEN = [
    ("unknown args field", lambda d: _set(_colm_args(d), "client_model.engine.tensor_paralel_size", 2),
     ["app 'colm'", "args.client_model.engine.tensor_paralel_size", "Extra inputs are not permitted"]),
    ("unknown reference server", lambda d: _set(_colm_args(d), "reference_server", "gpt-kong"),
     ["app 'colm'", "reference_server", "unknown specialist 'gpt-kong'"]),
    ("the old aggregator key", lambda d: _colm_args(d).update(aggregator=_colm_args(d).pop("reference_server")),
     ["app 'colm'", "args.aggregator", "Extra inputs are not permitted"]),
    ("unknown server reference", lambda d: _set(_colm_args(d), "specialists.0.server", "nowhere"),
     ["specialists.qwen-math.server", "unknown server 'nowhere'"]),
    ("unknown fallback", lambda d: _set(_colm_args(d), "selection.fallback", ["qwen-math", "ghost"]),
     ["selection.fallback", "'ghost'"]),
    ("duplicate specialists", lambda d: _colm_args(d)["specialists"].append(copy.deepcopy(_colm_args(d)["specialists"][1])),
     ["specialists: duplicate names ['gpt-conv']"]),
    ("duplicate servers", lambda d: _colm_args(d)["servers"].append(copy.deepcopy(_colm_args(d)["servers"][0])),
     ["servers: duplicate names ['local']"]),
    ("duplicate apps", lambda d: d["applications"].append({**copy.deepcopy(d["applications"][0]), "route_prefix": "/x"}),
     ["multiple configs", "upstream"]),
    ("bad type", lambda d: _set(_colm_args(d), "servers.0.max_concurrency", "many"),
     ["args.servers.0.max_concurrency", "valid integer"]),
    ("missing required", lambda d: _colm_args(d).pop("reference_server"),
     ["args.reference_server", "Field required"]),
    ("unknown top-level field", lambda d: _set(d, "proxy_locaton", "HeadOnly"),
     ["top level", "proxy_locaton"]),
    ("unknown app field", lambda d: _set(app(d, "colm"), "route_prefx", "/"),
     ["app 'colm'", "route_prefx"]),
    ("ray schema error", lambda d: _set(d, "proxy_location", "Everywhere"),
     ["proxy_location"]),
    ("upstream args error", lambda d: _set(app(d, "upstream")["args"], "served_models", []),
     ["app 'upstream'", "args.served_models"]),
    ("model not served upstream", lambda d: _set(_colm_args(d), "specialists.2.model", "smollm2-locl"),
     ["args.specialists.qwen-coder.model", "'smollm2-locl' is not served by app 'upstream'"]),
    ("route not served", lambda d: _set(_colm_args(d), "servers.0.base_url", "http://127.0.0.1:8000/upstrem/v1"),
     ["args.servers.local.base_url", "no colm_serve.stand_in.app:build_stand_in_app app"]),
]


@pytest.mark.parametrize(("name", "breaks", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_fails_naming_the_field(name: str, breaks, expected: list[str]) -> None:
    doc = default_doc()
    breaks(doc)
    with pytest.raises(ValueError) as info:
        validate_serve_config(doc, source="broken.yaml")
    message = str(info.value)
    assert message.startswith("broken.yaml"), message
    for part in expected:
        assert part in message, f"{name}: {part!r} not in {message!r}"


def test_base_url_to_other_port_is_not_checked_as_local() -> None:
    doc = default_doc()
    _set(_colm_args(doc), "servers.0.base_url", "http://127.0.0.1:9999/v1")  # someone else's server
    assert any("app colm: ok" in line for line in validate_serve_config(doc))


def test_non_colm_app_is_checked_by_ray_schema_only() -> None:
    doc = default_doc()
    doc["applications"].append({"name": "other", "route_prefix": "/other", "import_path": "pkg.mod:app"})
    assert "app other: pkg.mod:app is not a colm_serve builder; Ray's schema only" in validate_serve_config(doc)


def test_validate_file_names_the_file(tmp_path: Path) -> None:
    doc = default_doc()
    _set(_colm_args(doc), "reference_server", "nobody")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match=rf"^{path}: app 'colm': .*reference_server: unknown specialist 'nobody'"):
        validate_file(path)


def test_rayservice_errors_name_the_embedded_config(tmp_path: Path) -> None:
    manifest = docs_of(DEPLOY / "k8s" / "rayservice.yaml")[0]
    embedded = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    _set(_colm_args(embedded), "router.deployment.num_cpu", 1)
    manifest["spec"]["serveConfigV2"] = yaml.safe_dump(embedded)
    path = tmp_path / "rs.yaml"
    path.write_text(yaml.safe_dump(manifest))
    with pytest.raises(ValueError, match=r"RayService colm spec\.serveConfigV2: app 'colm': args\.router\.deployment\.num_cpu"):
        validate_file(path)


@pytest.mark.parametrize(("text", "match"), [
    ("apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n", "no Serve config found"),
    ("applications: [\n", "not valid YAML"),
    ("kind: RayService\nmetadata: {name: rs}\nspec:\n  serveConfigV2: {applications: []}\n", "must be a YAML string"),
    ("- just\n- a list\n", "no Serve config found"),
])
def test_validate_file_rejects_non_configs(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        validate_file(path)
