"""Consent: accept, decline, withdraw, and a user's state derived from the ledger.

Consent is always to one exact version (its identifier and text SHA-256 are
recorded). The state is never stored: it is read off the user's latest ledger
record against the version in force now.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Callable

from bot import texts
from bot.agreement import CHINA, AgreementVersion
from bot.errors import BotError
from bot.terms import Terms
from storage.consents import ConsentLedger, ConsentRecord

#: Derived states, see :meth:`Consents.state`.
STATUSES = ("none", "accepted", "outdated", "declined", "withdrawn")


class ConsentRefused(BotError):
    """A consent action that cannot be taken (e.g. a version not in force)."""

    kind = "conflict"
    code = "consent_refused"


@dataclasses.dataclass(frozen=True)
class ConsentState:
    """``status`` is one of :data:`STATUSES`; ``latest`` the record it comes from."""

    status: str
    current: AgreementVersion
    latest: ConsentRecord | None

    @property
    def accepted(self) -> bool:
        """True when the user accepted the version in force now."""
        return self.status == "accepted"


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where a consent action came from, for the ledger."""

    channel: str
    message_id: str | None = None
    unionid: str | None = None
    meta: dict = dataclasses.field(default_factory=dict)


class Consents:
    """The consent rules over the ledger."""

    def __init__(self, ledger: ConsentLedger, terms: Terms, clock: Callable[[], dt.datetime]) -> None:
        self.ledger = ledger
        self.terms = terms
        self._clock = clock

    async def state(self, openid: str) -> ConsentState:
        current = await self.terms.current()
        latest = await self.ledger.latest(openid)
        return ConsentState(_status(latest, current), current, latest)

    async def fresh_state(self, openid: str) -> ConsentState:
        """:meth:`state` against the versions as stored now, not the cache: for a
        consent action, or a feature that needs acceptance, right after another
        process made a version effective."""
        await self.terms.refresh()
        return await self.state(openid)

    async def accept(
        self, openid: str, origin: Origin, version: str | None = None, state: ConsentState | None = None
    ) -> tuple[ConsentState, bool]:
        """Record acceptance of the current version.

        ``version``, when given (the API), must be the version in force:
        consent is to one exact version. Returns the new state and whether a
        record was added (``False`` when it was already accepted, or for a
        retry of the same message). ``state`` may pass the state the caller
        just read.
        """
        state = state or await self.state(openid)
        if version is not None and version != state.current.version:
            upcoming = await self.terms.upcoming()
            if upcoming is not None and upcoming.version == version:
                raise ConsentRefused(
                    f"版本 {version} 尚未生效（将于生效后开放确认），目前只能同意当前版本 {state.current.version}"
                )
            raise ConsentRefused(f"只能同意当前生效的版本 {state.current.version}，不能同意版本 {version}")
        if state.accepted:
            return state, False
        added = await self._append(openid, "accept", state.current, origin)
        return await self.state(openid), added

    async def decline(
        self, openid: str, origin: Origin, state: ConsentState | None = None
    ) -> tuple[ConsentState, bool]:
        """Record refusal of the current version; not again when the user's
        latest choice already refused it (as :meth:`accept`: a ledger of
        choices, and the console's daily figures count its records)."""
        state = state or await self.state(openid)
        if state.status == "declined" and state.latest is not None and state.latest.version == state.current.version:
            return state, False
        added = await self._append(openid, "decline", state.current, origin)
        return await self.state(openid), added

    async def withdraw(
        self, openid: str, origin: Origin, state: ConsentState | None = None
    ) -> tuple[ConsentState, str]:
        """Withdraw the user's acceptance; returns the new state and the version withdrawn.

        Raises :class:`ConsentRefused` when there is no acceptance to withdraw.
        """
        state = state or await self.state(openid)
        accepted = acceptance_to_withdraw(state.latest)
        if accepted is None:
            raise ConsentRefused(texts.NOTHING_TO_WITHDRAW, code="nothing_to_withdraw")
        withdrawn = await self.terms.get(accepted.version)
        await self._append(openid, "withdraw", withdrawn, origin)
        return await self.state(openid), withdrawn.version

    async def _append(self, openid: str, action: str, version: AgreementVersion, origin: Origin) -> bool:
        record = ConsentRecord(
            openid=openid,
            unionid=origin.unionid,
            version=version.version,
            text_sha256=version.text_sha256,
            action=action,
            channel=origin.channel,
            message_id=origin.message_id,
            at=self._clock(),
            meta=origin.meta,
        )
        return await self.ledger.append(record)


def acceptance_to_withdraw(latest: ConsentRecord | None) -> ConsentRecord | None:
    """The acceptance a withdrawal takes back: ``latest``, the user's last
    choice, when it accepted a version (the one in force or an older one);
    ``None`` when there is nothing to withdraw (no choice yet, a refusal, a
    withdrawal). Chat, the API and ``consents import`` all ask this."""
    return latest if latest is not None and latest.action == "accept" else None


def _status(latest: ConsentRecord | None, current: AgreementVersion) -> str:
    if latest is None:
        return "none"
    if latest.action == "accept":
        return "accepted" if latest.version == current.version else "outdated"
    return "declined" if latest.action == "decline" else "withdrawn"


#: The columns of a consent record in the admin's CSV and the CLI's export.
RECORD_FIELDS = ("at", "openid", "unionid", "version", "action", "channel", "text_sha256", "message_id", "copied_from")


#: How the console names the ledger's actions and channels.
ACTION_LABELS = {"accept": "同意", "decline": "不同意", "withdraw": "撤回同意"}
CHANNEL_LABELS = {"official_account": "公众号", "miniprogram": "小程序"}
#: The console's CSV: the fields under Chinese headings, for the admins who open it in Excel
#: (the CLI's export keeps the field names and codes, for scripts).
RECORD_HEADINGS = {
    "at": "时间（北京）", "openid": "openid", "unionid": "unionid", "version": "版本", "action": "动作",
    "channel": "渠道", "text_sha256": "文本 SHA-256", "message_id": "消息 ID", "copied_from": "迁移自 openid",
}


def record_row(record: ConsentRecord, named: bool = False) -> dict:
    """One ledger record as a flat row (time in Beijing time with its offset,
    to the millisecond: a user's records of one second keep their order).
    ``named``: the action and channel by their Chinese names, as the console shows them."""
    action, channel = record.action, record.channel
    if named:
        action, channel = ACTION_LABELS.get(action, action), CHANNEL_LABELS.get(channel, channel)
    return {
        "at": record.at.astimezone(CHINA).isoformat(timespec="milliseconds"), "openid": record.openid, "unionid": record.unionid or "",
        "version": record.version, "action": action, "channel": channel,
        "text_sha256": record.text_sha256, "message_id": record.message_id or "",
        "copied_from": record.copied_from or "",
    }
