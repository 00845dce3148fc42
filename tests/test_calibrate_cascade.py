"""benchmarks/calibrate_cascade.py edits only the cascade's signal and threshold in a config."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from benchmarks.calibrate_cascade import write_cascade
from colm_serve.deploy_config import validate_file

ROOT = Path(__file__).resolve().parents[1]


def _cascade(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    colm = next(a for a in doc["applications"] if a["name"] == "colm")
    return colm["args"]["collaboration"]["cascade"]


def test_the_quality_config_gets_the_pair_and_keeps_everything_else(tmp_path):
    config = tmp_path / "quality.yaml"
    shutil.copy(ROOT / "deploy" / "serve_config.quality.yaml", config)
    before = config.read_text()
    write_cascade(config, signal="window", threshold=-1.23456)
    assert _cascade(config) == {**_cascade(ROOT / "deploy" / "serve_config.quality.yaml"),
                                "signal": "window", "threshold": -1.2346}
    write_cascade(config, signal="min", threshold=-3.0)  # a second fit replaces the first
    after = config.read_text()
    assert after.count("signal:") == 1 and _cascade(config)["signal"] == "min"
    assert [ln for ln in after.splitlines() if "signal" not in ln and "threshold:" not in ln] == \
        [ln for ln in before.splitlines() if "signal" not in ln and "threshold:" not in ln]
    validate_file(config)


def test_a_config_without_a_cascade_block_is_refused_with_its_name(tmp_path):
    config = tmp_path / "default.yaml"
    shutil.copy(ROOT / "serve_config.yaml", config)
    with pytest.raises(ValueError, match="cascade:"):
        write_cascade(config, signal="mean", threshold=-0.5)


def test_the_check_is_written_beside_the_pair_when_given(tmp_path):
    config = tmp_path / "quality.yaml"
    shutil.copy(ROOT / "deploy" / "serve_config.quality.yaml", config)
    write_cascade(config, signal="min", threshold=-1.5, check="none")
    assert _cascade(config)["check"] == "none" and config.read_text().count("check:") == 1
    write_cascade(config, signal="min", threshold=-1.5)  # no check given: the file's stays
    assert _cascade(config)["check"] == "none"
    validate_file(config)
