"""The KubeRay manifest, its Secret and the `ray up` cluster YAML hold together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from colm_serve.config import AppArgs
from colm_serve.deploy_config import APP_IMPORT_PATH, validate_file

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CLUSTER_YAML = ROOT / "deploy" / "cluster" / "ray-cluster.yaml"


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def rayservice() -> dict[str, Any]:
    return load(K8S / "rayservice.yaml")


def embedded_app_args() -> list[AppArgs]:
    config = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
    return [AppArgs.model_validate(a["args"]) for a in config["applications"] if a["import_path"] == APP_IMPORT_PATH]


def ray_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = spec["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def test_rayservice_embeds_a_valid_serve_config() -> None:
    manifest = rayservice()
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == "RayService"
    assert isinstance(manifest["spec"]["serveConfigV2"], str)
    lines = validate_file(K8S / "rayservice.yaml")
    assert any("app colm: ok (4 specialists, 3 servers" in line for line in lines), lines


def test_every_api_key_env_comes_from_the_secret_in_every_ray_container() -> None:
    secret = load(K8S / "secret.example.yaml")
    assert secret["kind"] == "Secret"
    key_envs = {s.api_key_env for args in embedded_app_args() for s in args.servers if s.api_key_env}
    assert key_envs == {"OPENAI_API_KEY", "DASHSCOPE_API_KEY", "DEEPSEEK_API_KEY"}
    assert key_envs <= set(secret["stringData"])
    containers = ray_containers(rayservice()["spec"])
    assert len(containers) >= 3
    for container in containers:
        env = {e["name"]: e for e in container.get("env", [])}
        for name in key_envs:
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": secret["metadata"]["name"], "key": name}, (container["name"], ref)


def test_secret_example_holds_placeholders_only() -> None:
    values = load(K8S / "secret.example.yaml")["stringData"].values()
    assert all("REPLACE-ME" in v for v in values)


def test_rayservice_has_cpu_and_gpu_worker_groups() -> None:
    cluster = rayservice()["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__, "keep the manifest's Ray in step with the project's"
    gpus = {g["groupName"]: g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)
            for g in cluster["workerGroupSpecs"]}
    assert any(n > 0 for n in gpus.values()), gpus
    assert any(n == 0 for n in gpus.values()), gpus
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    needs_gpu = [a.client_model.deployment.num_gpus for a in embedded_app_args()]
    assert all(n <= max(gpus.values()) for n in needs_gpu)


def test_images_match_the_dockerfile_and_ray_version() -> None:
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{ray.__version__}-" in dockerfile
    images = {c["image"] for c in ray_containers(rayservice()["spec"])}
    assert len(images) == 1, images


def test_ray_cluster_yaml_passes_rays_own_validation() -> None:
    raw = load(CLUSTER_YAML)
    # prepare_config + validate_config is what `ray up` runs before it launches anything;
    # it reads only the provider's bundled defaults, no cloud API.
    config = prepare_config(raw)
    validate_config(config)
    node_types = config["available_node_types"]
    assert config["head_node_type"] in node_types
    workers = {name: t for name, t in node_types.items() if name != config["head_node_type"]}
    instance_types = {name: t["node_config"]["InstanceType"] for name, t in workers.items()}
    assert any(i.startswith(("g", "p")) for i in instance_types.values()), instance_types  # a GPU type
    assert any(i.startswith(("m", "c")) for i in instance_types.values()), instance_types  # a CPU type
    assert all(t.get("max_workers", 0) >= t.get("min_workers", 0) for t in workers.values())


def test_ray_cluster_yaml_installs_the_project() -> None:
    raw = load(CLUSTER_YAML)
    commands = "\n".join(raw["setup_commands"])
    assert "pip install" in commands and "'.[gpu]'" in commands
    assert "colm-serve prepare-models" in commands
    assert raw["docker"]["image"].startswith(f"rayproject/ray:{ray.__version__}-")
    assert any("ray start --head" in c for c in raw["head_start_ray_commands"])
    assert any("ray start --address=$RAY_HEAD_IP" in c for c in raw["worker_start_ray_commands"])
