"""JSON and JSONL files written so that a crash never leaves half a record behind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class FormatError(ValueError):
    """A file that the benchmark's official reader would reject or misread."""

    def __init__(self, path: Path, where: str, message: str) -> None:
        super().__init__(f"{path}: {where}: {message}")


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; a missing file has none."""
    if not path.exists():
        return []
    records = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise FormatError(path, f"line {number}", f"not JSON: {exc}") from exc
    return records


def write_json_atomic(path: Path, data: Any, *, lines: bool = False) -> None:
    """Replace a file in one step (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        if lines:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in data)
        else:
            json.dump(data, f, ensure_ascii=False, indent=2)
    os.replace(tmp, path)


def read_json(path: Path, default: Any = None) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FormatError(path, "file", f"not JSON: {exc}") from exc


def require(path: Path, where: str, record: Any, key: str, types: type | tuple[type, ...]) -> Any:
    """record[key] as the official reader indexes it, of the type it then uses."""
    if not isinstance(record, dict):
        raise FormatError(path, where, f"expected an object, got {type(record).__name__}")
    if key not in record:
        raise FormatError(path, where, f"missing field {key!r}")
    value = record[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise FormatError(path, where, f"field {key!r} is a bool")
    if not isinstance(value, types):
        raise FormatError(path, where, f"field {key!r} has type {type(value).__name__}")
    return value
