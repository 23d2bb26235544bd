"""Which notice categories a user receives: the opt-out rule lives in
:func:`bot.notices.receives`; this module reads and changes the choices."""

from __future__ import annotations

import logging

from bot import texts
from bot.notice_checks import IMPORTANT_BY_DEFAULT
from bot.notices import CATEGORY_BY_NAME
from bot.traditional import simplified
from bot.validation import Invalid, fold
from storage.notices import CATEGORIES
from storage.preferences import Preferences
from storage.recent_opt_outs import RecentOptOuts

log = logging.getLogger(__name__)


#: Words for every category at once (退订 全部, 订阅所有通知).
_ALL_WORDS = frozenset(("全部", "所有", "全部通知", "所有通知", "全部类别", "所有类别", "all"))


def categories_from_name(name: str) -> list[str]:
    """:func:`category_from_name`, or every category for 全部 / 所有 (通知)."""
    if _plain(name) in _ALL_WORDS:
        return list(CATEGORIES)
    return [category_from_name(name)]


def category_from_name(name: str) -> str:
    """``"服务公告"`` or ``"service"`` to ``"service"`` (also ``“服务公告”`` and
    ``服务公告。`` and ``：服务公告`` as phones type them); :class:`Invalid` otherwise."""
    value = _plain(name)
    if value in CATEGORY_BY_NAME:
        return CATEGORY_BY_NAME[value]
    if value.lower() in CATEGORIES:
        return value.lower()
    raise Invalid(texts.unknown_category(list(CATEGORIES.values())), "category")


def _plain(name: str) -> str:
    """A category's name as typed (“服务公告”。, 服務公告 in Traditional), as the names are written."""
    return simplified(fold(name)).strip(" “”\"'「」《》『』。.!！:：?？~～")


class NoticePreferences:
    """``recent``: where opt-outs are also noted for broadcasts under way
    (:mod:`storage.recent_opt_outs`); None where nothing sends."""

    def __init__(self, repo: Preferences, recent: RecentOptOuts | None = None) -> None:
        self.repo = repo
        self.recent = recent

    async def settings(self, openid: str) -> dict[str, bool]:
        """Category -> on (True) or off, for every category."""
        off = await self.repo.opted_out(openid)
        return {code: code not in off for code in CATEGORIES}

    async def change(self, openid: str, category: str, on: bool) -> bool:
        """Set ``category`` on or off; whether that changed anything."""
        was_on = category not in await self.repo.opted_out(openid)
        await self.set(openid, category, on)
        return was_on != on

    async def set(self, openid: str, category: str, on: bool) -> None:
        if on:
            await self.repo.opt_in(openid, category)
        else:
            await self.repo.opt_out(openid, category)
        if self.recent is not None:
            try:
                await self.recent.noted(openid, category, out=not on)
            except Exception as exc:  # noqa: BLE001 - stored all the same; only a batch in hand may miss it
                log.warning("opt-out of %s not noted for broadcasts under way (Redis): %s", openid, exc)

    async def replace(self, openid: str, settings: dict[str, bool]) -> None:
        """Set several categories at once (the API's PUT)."""
        for category, on in settings.items():
            await self.set(openid, category, on)

    async def export(self, openid: str) -> dict[str, str]:
        return {code: "on" if on else "off" for code, on in (await self.settings(openid)).items()}


def settings_text(settings: dict[str, bool]) -> str:
    lines = [f"· {CATEGORIES[c]}：{'接收' if on else '已退订'}" for c, on in settings.items()]
    important = "、".join(CATEGORIES[c] for c in IMPORTANT_BY_DEFAULT)
    return texts.notice_settings(lines, important)
