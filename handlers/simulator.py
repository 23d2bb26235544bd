"""The chat simulator page (demo and dev mode only)."""

from __future__ import annotations


def routes(runtime) -> list[tuple]:
    """URL rules of the simulator; none unless the simulator is enabled."""
    return []
