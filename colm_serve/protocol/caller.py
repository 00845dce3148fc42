"""Who is asking: found once by the API layer, carried by every layer below it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """A client app's label (a configured name or a digest, never its key) and its fair-share weight."""

    label: str
    weight: float = 1.0
    admin: bool = False  # may read every key's stats
