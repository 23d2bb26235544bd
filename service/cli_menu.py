"""CLI commands: `wetoop-bot menu ...`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the commands of this module to the parser."""
