"""A merchant account's life: registration, review, suspension, reinstatement, closure.

The allowed status changes are declared once in :data:`TRANSITIONS`; chat,
the API, the admin pages and the CLI all change status through
:meth:`MerchantAccounts.set_status`.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Awaitable, Callable

from bot import texts
from bot.errors import BotError
from bot.traditional import simplified
from storage.merchants import Merchant, MerchantExists, Merchants, StatusChanged, StatusEntry, stored_profile

log = logging.getLogger(__name__)

#: Told to the merchant after an admin changed their account: (merchant, status before, reason, by).
StatusListener = Callable[[Merchant, str, str, str], Awaitable[None]]

def changed_by(by: str, for_admin: bool = True) -> str:
    """Who made a status change, in Chinese: the merchant (``user``), an admin in
    the console (``admin:NAME``) or the CLI (``cli``, ``cli:NAME``); the merchant's
    own export says only 微拓 for the latter."""
    if by == "user":
        return "商家本人" if for_admin else "本人"
    if not for_admin:
        return "微拓"
    kind, _, name = by.partition(":")
    where = {"admin": "管理员", "cli": "命令行"}.get(kind)
    if where is None:
        return by
    return f"{where} {name}" if name else where


STATUSES = {
    "pending_review": "待审核",
    "active": "已生效",
    "suspended": "已暂停",
    "closed": "已注销",
}


def unknown_status(status: str) -> str:
    """The refusal of a status that is none of :data:`STATUSES`, each named in Chinese too."""
    return f"未知的状态 {status}，可选：{STATUS_CHOICES}"


STATUS_CHOICES = "，".join(f"{code}（{label}）" for code, label in STATUSES.items())


def status_code(name: str) -> str | None:
    """A status by its code or by its Chinese label as lists show it (已生效 is
    ``active``; Traditional type too); None for neither."""
    name = simplified(name.strip())
    if name in STATUSES:
        return name
    return next((code for code, label in STATUSES.items() if label == name), None)

#: (from, to) -> what the change is called. Closing is allowed from every open status.
TRANSITIONS = {
    ("pending_review", "active"): "审核通过",
    # Still to be reviewed, the merchant asked to correct their details (the reason says what).
    ("pending_review", "pending_review"): "退回修改",
    ("pending_review", "suspended"): "暂停",
    ("active", "suspended"): "暂停",
    ("suspended", "active"): "恢复",
    ("suspended", "pending_review"): "恢复为待审核",
    ("pending_review", "closed"): "注销",
    ("active", "closed"): "注销",
    ("suspended", "closed"): "注销",
    # Only for an account closed while suspended, whose user may not register
    # again by themselves (see barred_from_registering): the owner lifts that.
    ("closed", "closed"): "允许重新注册",
}

#: Changing these sends an active account back to review.
ENTITY_FIELDS = ("entity_type", "entity_name", "credit_code")


class ReasonRequired(BotError):
    """A status change without its reason: the form is incomplete, nothing refused by the rules."""

    kind = "invalid"
    code = "reason_required"


class UnknownStatus(BotError):
    """A status that does not exist: the input is wrong, no rule refused it."""

    kind = "invalid"
    code = "bad_status"


class AccountRefused(BotError):
    """An account change that the rules do not allow; the message says why."""

    kind = "conflict"
    code = "account_refused"


class NoAccount(BotError):
    kind = "not_found"
    code = "no_account"


class AlreadyClosed(BotError):
    kind = "conflict"
    code = "already_closed"


#: The longest reason for a status change (it is quoted in the merchant's notice).
REASON_LIMIT = 500


class IncompleteProfile(BotError):
    kind = "invalid"
    code = "incomplete_profile"


#: The profile's fields and their labels, in the registration's order.
FIELD_LABELS = {
    "entity_type": "主体类型",
    "entity_name": "名称",
    "credit_code": "统一社会信用代码",
    "adult": "年龄确认",
    "contact_name": "联系人姓名",
    "phone": "手机号码",
    "email": "邮箱",
}


def missing_fields(profile: dict) -> list[str]:
    """The required fields ``profile`` lacks (an enterprise also needs its credit code)."""
    required = ["entity_type", "entity_name", "contact_name", "phone"]
    if profile.get("entity_type") == "enterprise":
        required.insert(2, "credit_code")
    return [f for f in required if not profile.get(f)]


def holds(merchant: Merchant, profile: dict) -> bool:
    """Whether ``merchant``'s record already holds ``profile``'s answers: saving them writes nothing."""
    return stored_profile(merchant.profile()) == stored_profile(profile)


def profile_stamp(merchant: Merchant | None) -> str:
    """What someone saw of a merchant record (the time of its last change, as
    text; "" for no record), to refuse a change based on an older one."""
    return merchant.updated_at.isoformat() if merchant is not None and merchant.updated_at else ""


class MerchantAccounts:
    """The rules of a merchant account over the ``merchants`` repository."""

    def __init__(self, merchants: Merchants, clock: Callable[[], dt.datetime]) -> None:
        self.repo = merchants
        self._clock = clock
        #: Called after a change made by anyone but the user (the runtime sends them a notice).
        self.on_admin_change: StatusListener | None = None

    async def get(self, openid: str) -> Merchant | None:
        return await self.repo.get(openid)

    async def save_profile(self, openid: str, profile: dict, by: str = "user",
                           seen: str | None = None) -> tuple[Merchant, str]:
        """Register (a new or a closed account) or change a profile.

        Returns the record and what happened: ``"registered"``, ``"updated"``,
        ``"unchanged"`` (the same answers as stored: nothing written),
        ``"resubmitted"`` (an active account whose entity changed goes back
        to review) or ``"corrected"`` (an account returned for correction is
        submitted again). A suspended account cannot be changed, nor one closed
        while suspended registered again.
        """
        missing = missing_fields(profile)
        if missing:  # every way in (chat, API) checks first; this is the rule's last word
            raise IncompleteProfile("注册资料不完整，缺少：" + "、".join(FIELD_LABELS[f] for f in missing) + "。")
        at = self._clock()
        existing = await self.repo.get(openid)
        if (seen is not None and profile_stamp(existing) != seen and existing is not None
                and existing.status not in ("closed", "suspended")
                and holds(existing, profile)):
            # The same answers sent again: their first submission was saved though
            # its reply said otherwise (the database stalled as it answered).
            return existing, ("registered" if seen == profile_stamp(None) else "updated")
        if seen is not None and profile_stamp(existing) != seen:
            # Changed elsewhere (the mini-program) since the user began: saving these
            # answers would silently undo that change.
            raise AccountRefused(
                "您的商家账户在您填写期间有了变化（如在小程序中修改了资料，或账户状态有变），为免覆盖，本次填写未保存。"
                "请回复“我的账户”查看当前情况，需要时再回复“修改资料”或“注册”。", code="profile_changed",
            )
        if existing is None:
            entry = StatusEntry("pending_review", at, by, "提交注册")
            try:
                await self.repo.create(openid, profile, "pending_review", entry)
            except MerchantExists:  # a concurrent registration won: treat as an update
                return await self.save_profile(openid, profile, by, seen)
            return await self._reload(openid), "registered"
        if existing.status == "suspended":
            # Said in chat and in the mini-program alike: no chat command in it, the reason as chat gives it.
            why = await self.suspension_reason(openid)
            raise AccountRefused(f"您的商家账户已被暂停{f'（原因：{why}）' if why else ''}，暂时不能修改资料。"
                                 "如有疑问请联系微拓客服。", code="account_suspended")
        if existing.status == "closed" and await self.barred_from_registering(openid):
            # Else closing and registering again would lift a suspension
            # without the owner who alone may reinstate.
            raise AccountRefused(texts.REREGISTRATION_BARRED, code="account_suspended")
        try:
            if existing.status == "closed":
                entry = StatusEntry("pending_review", at, by, "注销后重新注册")
                await self.repo.update(openid, "closed", profile=profile, entry=entry)
                return await self._reload(openid), "registered"
            changed_entity = any(profile.get(f) != getattr(existing, f) for f in ENTITY_FIELDS)
            if existing.status == "active" and changed_entity:
                entry = StatusEntry("pending_review", at, by, "修改主体信息，需重新审核")
                await self.repo.update(openid, "active", profile=profile, entry=entry)
                return await self._reload(openid), "resubmitted"
            returned = await self.returned_reason(openid) if existing.status == "pending_review" else None
            if returned is not None and holds(existing, profile):
                # Sent back as it was returned: no correction to record, and the reason still stands.
                raise AccountRefused(
                    f"您的资料与退回时相同，尚未按审核意见修改（审核意见：{returned}）。请修改相应项目后再提交；"
                    "如认为资料无误，请联系微拓客服。", code="nothing_corrected",
                )
            if returned is not None:
                # The reviewer asked for a correction: the history says it was made (and when).
                entry = StatusEntry("pending_review", at, by, "按退回意见修改资料，重新提交审核")
                await self.repo.update(openid, "pending_review", profile=profile, entry=entry)
                return await self._reload(openid), "corrected"
            if holds(existing, profile):
                # Nothing to write: the record, and the stamp another device holds as its ETag, stay.
                return existing, "unchanged"
            await self.repo.update(openid, existing.status, profile=profile)
        except StatusChanged:
            raise AccountRefused("账户状态刚刚发生了变化，请回复“我的账户”查看后重试。", code="status_changed") from None
        return await self._reload(openid), "updated"

    async def set_status(self, openid: str, status: str, reason: str, by: str, *, expected: str | None = None) -> Merchant:
        """Change the status (review, suspend, reinstate, close); ``reason`` is required.

        Closing erases the personal fields; the consent ledger is kept.
        ``expected``: the status the caller decided on (e.g. which permission
        the change needs); another status found means someone changed it
        meanwhile, refused as ``status_changed``.
        """
        if status not in STATUSES:  # a form's or a flag's value: invalid input, not a refusal by the rules
            raise UnknownStatus(unknown_status(status))
        reason = reason.strip()
        if not reason:
            raise ReasonRequired("请写明原因（会记入状态历史）")
        if len(reason) > REASON_LIMIT:  # it goes into the merchant's notice, which has a limit of its own
            raise ReasonRequired(f"原因最多 {REASON_LIMIT} 个字，当前 {len(reason)} 个字", code="reason_too_long")
        existing = await self.repo.get(openid)
        if existing is None:
            raise NoAccount(f"没有 openid 为 {openid} 的商家账户")
        refuse_no_change(existing, status)
        if expected is not None and existing.status != expected:
            raise AccountRefused("账户状态刚刚被其他操作改变了，请刷新后重试。", code="status_changed")
        if existing.status == "suspended" and status in ("active", "pending_review"):
            # Reinstating returns to the status the suspension interrupted: an
            # account suspended while pending review has still to be reviewed.
            before = await self.status_before_suspension(openid)
            if status != before:
                why = "恢复不能跳过审核。" if before == "pending_review" else "恢复后无需重新审核。"
                raise AccountRefused(
                    f"该账户暂停前为“{STATUSES[before]}”，恢复后应回到“{STATUSES[before]}”"
                    f"（{TRANSITIONS[('suspended', before)]}），{why}",
                    code="bad_transition",
                )
        moves = await self.moves(existing)
        if status not in (to for to, _label in moves):
            if (existing.status, status) == ("closed", "closed"):
                refusal = "该账户已注销，用户可以自行重新注册，无需解除限制。"
            else:
                refusal = f"不能从“{STATUSES[existing.status]}”改为“{STATUSES[status]}”。"
            allowed = "、".join(f"{label}（{to}）" for to, label in moves)
            raise AccountRefused(f"{refusal}允许的变更：{allowed or '无（账户已注销）'}", code="bad_transition")
        entry = StatusEntry(status, self._clock(), by, reason)
        try:
            await self.repo.update(openid, existing.status, entry=entry, erase=(status == "closed"))
        except StatusChanged:
            raise AccountRefused("账户状态刚刚被其他操作改变了，请刷新后重试。", code="status_changed") from None
        merchant = await self._reload(openid)
        if by != "user" and self.on_admin_change is not None:
            try:
                await self.on_admin_change(merchant, existing.status, reason, by)
            except Exception as exc:  # the change is stored; telling the merchant is best effort
                log.warning("could not tell %s about the status change: %r", openid, exc)
        return merchant

    async def suspension_reason(self, openid: str) -> str | None:
        """Why the account was last suspended (what the admin wrote), if it was."""
        suspensions = [entry for entry in await self.repo.history(openid) if entry.status == "suspended"]
        return suspensions[-1].reason if suspensions else None

    async def status_reason(self, merchant: Merchant) -> str | None:
        """Why the account is as it is, when an admin said why and it still
        stands: the suspension's reason, or the return for correction's."""
        if merchant.status == "suspended":
            return await self.suspension_reason(merchant.openid)
        if merchant.status == "pending_review":
            return await self.returned_reason(merchant.openid)
        if merchant.status == "closed":
            history = await self.repo.history(merchant.openid)
            if history and history[-1].status == "closed" and history[-1].by != "user" and \
                    (len(history) < 2 or history[-2].status != "closed"):
                return history[-1].reason  # closed by 微拓: why
        return None

    async def returned_reason(self, openid: str) -> str | None:
        """Why an account in review was returned for correction (退回修改),
        while its user has not resubmitted since; else None."""
        history = await self.repo.history(openid)
        if len(history) >= 2 and history[-1].status == history[-2].status == "pending_review" and history[-1].by != "user":
            return history[-1].reason
        return None

    async def status_before_suspension(self, openid: str) -> str:
        """The status a suspended account returns to when reinstated."""
        history = await self.repo.history(openid)
        last = max((i for i, e in enumerate(history) if e.status == "suspended"), default=0)
        return "pending_review" if last and history[last - 1].status == "pending_review" else "active"

    async def moves(self, merchant: Merchant) -> list[tuple[str, str]]:
        """The status changes open to ``merchant`` now: ``(to, label)``."""
        moves = [(to, label) for (frm, to), label in TRANSITIONS.items() if frm == merchant.status]
        if merchant.status == "suspended":
            back = await self.status_before_suspension(merchant.openid)
            moves = [(to, label) for to, label in moves if to in (back, "closed")]
        if merchant.status == "closed" and not await self.barred_from_registering(merchant.openid):
            moves = []
        return moves

    async def sharing_credit_code(self, merchant: Merchant) -> tuple[list[Merchant], int]:
        """Other accounts with ``merchant``'s credit code: a duplicate, or someone
        registering a company not theirs (the reviewer is told, in the console and
        the CLI). The first 20 of them, and how many there are."""
        if not merchant.credit_code:
            return [], 0
        return await self.repo.with_credit_code(merchant.credit_code, besides=merchant.openid)

    async def barred_from_registering(self, openid: str) -> bool:
        """Whether the account's user may not register it again: it was closed
        while suspended (how 微拓 ends the service of an abuser; a closure of an
        account in good standing, the user's or an admin's on their request,
        leaves them free to come back). The owner's 允许重新注册 lifts it."""
        # Every status change has its history entry: the last two are the closure and what it ended.
        return [e.status for e in (await self.repo.history(openid))[-2:]] == ["suspended", "closed"]

    async def _reload(self, openid: str) -> Merchant:
        merchant = await self.repo.get(openid)
        assert merchant is not None
        return merchant

    async def export(self, openid: str) -> dict | None:
        """The ``merchant`` part of the user's export document."""
        merchant = await self.repo.get(openid)
        if merchant is None:
            return None
        history = await self.repo.history(openid)
        return {
            **merchant.profile(),
            "status": merchant.status,
            "created_at": _iso(merchant.created_at),
            "updated_at": _iso(merchant.updated_at),
            "status_history": [
                {"status": e.status, "at": _iso(e.at), "by": e.by, "reason": e.reason} for e in history
            ],
        }


def refuse_no_change(merchant: Merchant, status: str) -> None:
    """Refuse "changing" an account to the status it has, unless that is an
    action of its own (退回修改, 允许重新注册): it would only add a history entry
    and tell the merchant nothing happened."""
    if merchant.status == status and (status, status) not in TRANSITIONS:
        raise AccountRefused(f"该商家已经是“{STATUSES[status]}”状态，无需变更。", code="no_change")


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.timezone.utc).isoformat() if value else None


def tell_merchants_through(broadcasts) -> StatusListener:
    """A listener for :attr:`MerchantAccounts.on_admin_change` that sends the
    merchant a notice through ``broadcasts`` (:class:`bot.notices.Broadcasts`):
    important, since it concerns their own account, so an opt-out does not stop it."""

    async def tell(merchant: Merchant, before: str, reason: str, by: str) -> None:
        title, body = texts.status_notice(merchant.status, before, reason)
        await broadcasts.send(
            category="admin", title=title, body=body, important=True,
            audience={"type": "openids", "openids": [merchant.openid]}, by=by,
        )

    return tell
