"""The admin console under ``/admin``: server-rendered pages."""

from __future__ import annotations


def routes(runtime) -> list[tuple]:
    """URL rules of the admin console."""
    return []
