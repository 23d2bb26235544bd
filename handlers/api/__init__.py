"""The mini-program's JSON API under ``/api/v1``."""

from __future__ import annotations


def routes(runtime) -> list[tuple]:
    """URL rules of the API (filled in by the API handlers)."""
    return []
