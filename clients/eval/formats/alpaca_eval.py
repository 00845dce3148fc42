"""AlpacaEval files: model outputs and pairwise annotations against reference outputs.

Mirrors alpaca_eval: `utils.load_or_convert_to_dataframe` reads a JSON list of records;
`evaluate` needs the columns `instruction` and `output` and takes the model's name from a
single-valued `generator`; head-to-head merges outputs with the reference on `instruction`;
annotations carry `preference` (1 = reference `output_1` wins, 2 = model `output_2` wins,
1.5 = draw, null = no verdict) and `metrics.get_winrate` turns them into a win rate.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from clients.eval.formats.jsonio import FormatError, read_json, require


def output_record(*, instruction: str, output: str, generator: str, dataset: str | None = None) -> dict[str, Any]:
    record = {"instruction": instruction, "output": output, "generator": generator}
    if dataset:
        record["dataset"] = dataset
    return record


def annotation_record(*, instruction: str, reference: dict[str, Any], model: dict[str, Any], annotator: str,
                      preference: float | None, raw_completion: list[str],
                      parse_error: str | None = None) -> dict[str, Any]:
    """AlpacaEval's record; `parse_error` (ours, which its readers ignore) says why preference is null."""
    return {
        "instruction": instruction,
        "output_1": reference["output"], "generator_1": reference["generator"],
        "output_2": model["output"], "generator_2": model["generator"],
        "annotator": annotator, "preference": preference, "raw_completion": raw_completion,
        "parse_error": parse_error,
    }


def parse_choice(text: str) -> str | None:
    """The judge's pick, "m" or "M", when its answer is exactly that identifier."""
    words = text.strip().split()
    token = words[0].strip("\"'`*.,:;()[]") if words else ""
    return token if token in ("m", "M") else None


def winrate(preferences: list[float | None]) -> dict[str, float | int]:
    """alpaca_eval's head-to-head summary: win rate in %, its standard error, and the counts."""
    prefs = [p - 1 for p in preferences if p is not None and 1 <= p <= 2]
    n = len(prefs)
    mean = sum(prefs) / n if n else math.nan
    sem = math.sqrt(sum((p - mean) ** 2 for p in prefs) / (n - 1) / n) if n > 1 else math.nan
    return {
        "win_rate": mean * 100, "standard_error": sem * 100, "n_total": n,
        "n_wins": sum(p > 0.5 for p in prefs), "n_wins_base": sum(p < 0.5 for p in prefs),
        "n_draws": sum(p == 0.5 for p in prefs),
    }


def _records(path: Path) -> list[dict[str, Any]]:
    data = read_json(path)
    if data is None:
        raise FormatError(path, "file", "missing")
    if not isinstance(data, list):
        raise FormatError(path, "file", "expected a JSON list of records")
    return data


def validate_outputs(path: Path, *, need_generator: bool = True) -> dict[str, dict[str, Any]]:
    """Outputs by instruction; one generator per file, as `get_generator_name` expects."""
    outputs: dict[str, dict[str, Any]] = {}
    for n, rec in enumerate(_records(path)):
        where = f"record {n}"
        instruction = require(path, where, rec, "instruction", str)
        require(path, where, rec, "output", str)
        if need_generator or "generator" in rec:
            require(path, where, rec, "generator", str)
        if instruction in outputs:
            raise FormatError(path, where, "duplicate instruction (outputs are merged on it)")
        outputs[instruction] = rec
    generators = {r.get("generator") for r in outputs.values()}
    if need_generator and len(generators) > 1:
        raise FormatError(path, "file", f"several generators {sorted(generators)[:3]}")
    return outputs


def validate_annotations(path: Path) -> list[dict[str, Any]]:
    records = _records(path)
    for n, rec in enumerate(records):
        where = f"record {n}"
        for key in ("instruction", "output_1", "output_2", "generator_1", "generator_2", "annotator"):
            require(path, where, rec, key, str)
        pref = require(path, where, rec, "preference", (int, float, type(None)))
        if pref is not None and not 1 <= pref <= 2:
            raise FormatError(path, where, f"preference {pref} is outside [1, 2]")
    return records
