"""Request spans: a no-op until OpenTelemetry is turned on by the standard OTEL_* variables.

Code on the request path opens spans with `span(name, **attributes)` and adds attributes
as it learns them (`s.set(tokens=...)`); nothing here depends on whether tracing is on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _NoSpan:
    def set(self, **attributes: Any) -> None:
        return None


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[_NoSpan]:
    yield _NoSpan()
