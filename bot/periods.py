"""Filters by time and version that the console and the CLI share."""

from __future__ import annotations

import datetime as dt

from bot.errors import BotError


def check_period(since: dt.datetime | None, until: dt.datetime | None, since_label: str, until_label: str) -> None:
    """Refuse a period that ends before it starts (``since_label`` and
    ``until_label`` name the two as the admin typed them): it would answer
    "0 records", as if there were none."""
    if since is not None and until is not None and since >= until:
        between = f"{_gap(since_label[-1:])}应早于{_gap(until_label[:1])}"
        raise BotError(f"{since_label}{between}{until_label}：这段时间里不会有任何记录", code="bad_period")


def _gap(char: str) -> str:
    """A space between Chinese and a label's Latin end (the CLI's ``--until``),
    as Chinese text sets off a Latin word; none by a Chinese word or a
    full-width bracket (the console's 开始日期（…）)."""
    return " " if char.isascii() else ""
