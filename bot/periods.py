"""Filters by time and version that the console and the CLI share."""

from __future__ import annotations

import datetime as dt

from bot.errors import BotError


def check_period(since: dt.datetime | None, until: dt.datetime | None, since_label: str, until_label: str) -> None:
    """Refuse a period that ends before it starts (``since_label`` and
    ``until_label`` name the two as the admin typed them): it would answer
    "0 records", as if there were none."""
    if since is not None and until is not None and since >= until:
        raise BotError(f"{since_label}应早于{until_label}：这段时间里不会有任何记录", code="bad_period")
