"""Every message type and event the official account handles, in one file.

Each handler is one decorated function (see :mod:`bot.router`) that calls the
domain and picks the words from :mod:`bot.texts`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re

from bot import own_questions, texts
from bot.own_questions import NEAR_CONSENT, own_answer
from bot.places import BARE_PLACE, CLOSE, OPEN, PLACE, PREAMBLE_WORDS, section_and_clause
from bot.agreement import AgreementVersion
from bot.chat_context import Chat
from bot.consent import ConsentRefused, ConsentState, Origin
from bot.dialogs import BACK, CANCEL, CONFIRM, DIALOG_WORDS, RESTART, RESUME, RESUME_STEP, amending, bare_word, control_word
from bot.gate import require_consent
from bot.merchants import STATUSES, AccountRefused, profile_stamp
from bot.notice_checks import IMPORTANT_BY_DEFAULT
from bot.preferences import categories_from_name, settings_text
from bot.answers import with_hint
from bot.registration import REGISTRATION, means_no_email, profile_answers
from bot.replies import Reply
from bot.router import PASS, Router, normalize_command
from bot.terms import VersionNotFound, withdrawal_text
from bot.validation import (
    STATEMENT_END, TRAILING_PUNCTUATION, Invalid, is_entity_type, is_question, parse_credit_code, parse_email,
    parse_phone, parse_yes_no,
)
from storage.dialog_state import PROMPT_TTL, DialogState
from storage.mongo import MongoUnavailable
from storage.notices import CATEGORIES
from storage.redis_store import RedisUnavailable

log = logging.getLogger(__name__)

router = Router()

#: Menu keys declared in data/menu.json.
MENU_HELP = "HELP"
MENU_TERMS = "TERMS"
MENU_ACCEPT = "CONSENT_ACCEPT"
MENU_DECLINE = "CONSENT_DECLINE"
MENU_WITHDRAW = "CONSENT_WITHDRAW"
MENU_REGISTER = "REGISTER"
MENU_ACCOUNT = "MY_ACCOUNT"

CONSENT_WORDS = ("同意", "不同意", "撤回同意")


async def origin(chat: Chat) -> Origin:
    """The ledger's view of where a chat action came from (with the unionid when
    WeChat gave one: the API's records of the same person carry it too)."""
    message = chat.message
    meta = {"msg_type": message.kind, "create_time": message.create_time, "to_user": message.to_user}
    if message.event:
        meta["event"], meta["event_key"] = message.event, message.event_key
    follower = await chat.services.followers.get(chat.openid)
    unionid = follower.unionid if follower is not None else None
    return Origin(channel=message.channel, message_id=message.dedupe_key, unionid=unionid, meta=meta)


# -- follow and unfollow ---------------------------------------------------------


@router.event("subscribe")
async def welcome(chat: Chat) -> Reply:
    services = chat.services
    stored = True
    try:
        await services.followers.subscribed(chat.openid, services.clock())
    except MongoUnavailable:
        # The welcome matters more than the record, written once MongoDB is back.
        log.warning("could not record the follow of %s now", chat.openid)
        services.followers.defer(chat.openid, True, services.clock())
        stored = False
    if services.mini is not None and (not stored or chat.state_unknown):
        # Storage down: its time is spent (a frozen Redis's token read, 1.5 s more, took a
        # welcome past 4 s); the unionid is asked within a minute instead.
        services.mini.learn_later(chat.openid)
    elif services.mini is not None:
        # The unionid makes this follower and their mini-program self one person.
        try:
            await services.mini.learn_follower(chat.openid)
        except Exception:  # noqa: BLE001 - the welcome goes out regardless; a log-in or the upkeep joins them later
            log.warning("could not link %s to their mini-program self now", chat.openid, exc_info=True)
    try:
        state = await chat.consent()
        current, accepted = state.current, state.accepted
    except MongoUnavailable:
        current, accepted = await services.terms.current(), None
    if not accepted:
        await chat.asked_to_accept(current.version)
    welcome = texts.welcome(current, accepted=bool(accepted))
    return Reply(texts.with_upcoming(welcome, await services.terms.pending(), accepted))


@router.event("unsubscribe")
async def farewell(chat: Chat) -> None:
    services = chat.services
    try:
        await services.followers.unsubscribed(chat.openid, services.clock())
    except MongoUnavailable:  # kept and written once MongoDB is back: no notices to a former follower
        log.warning("could not record the unfollow of %s now", chat.openid)
        services.followers.defer(chat.openid, False, services.clock())
    # A dialog left open would take the first message after a re-follow as an
    # answer, under a welcome that says nothing of it; its draft stays, and
    # 注册 offers to resume it.
    try:
        await services.dialogs.clear(chat.openid)
    except RedisUnavailable:
        pass  # it expires by itself (30 minutes idle)
    return None


# -- help --------------------------------------------------------------------------


@router.command("帮助", "help", "菜单", "?", "？")
@router.menu(MENU_HELP)
async def help_(chat: Chat) -> Reply:
    return Reply(texts.HELP)


@router.event("click")
async def unknown_menu_item(chat: Chat) -> Reply:
    # A menu key this version does not know (a menu pushed by another version): say what works.
    return Reply(f"{texts.UNKNOWN_MENU_ITEM}\n\n{texts.HELP}")


# -- the agreement -----------------------------------------------------------------


@router.command("条款", "协议")
@router.menu(MENU_TERMS)
async def terms_overview(chat: Chat) -> Reply:
    terms = chat.services.terms
    return Reply(await _overview(chat, await terms.current()))


async def _overview(chat: Chat, current: AgreementVersion) -> str:
    """条款: the version in force and those to come, which say what they ask of this user."""
    pending = await chat.services.terms.pending()
    return texts.terms_overview(current, pending, await chat.accepted_or_unknown() if pending else None)


_VERSION = r"([0-9A-Za-z][0-9A-Za-z._-]*)"
#: A version named alone (条款 2026-12-01): with a digit, so that 协议pdf or 条款 GDPR stay questions.
_VERSION_ALONE = r"([0-9A-Za-z._-]*\d[0-9A-Za-z._-]*)"


@router.command("条款", "协议", args=OPEN + rf"(?:{_VERSION}\s+)?" + PLACE + CLOSE)
async def terms_section(chat: Chat) -> Reply:
    version_id, place = chat.args
    try:
        version, cite, note = await _version_named(chat, version_id)
    except VersionNotFound as exc:
        return Reply(texts.no_such_version(version_id, exc))
    number, clause = section_and_clause(place)
    section = version.section(number) if number is not None else None
    shown = place.strip("第节款条")  # "没有第 4.9 款", not "没有第 第4.9款 款"
    shown = shown if len(shown) <= 12 else shown[:12] + "…"  # cut, and seen to be
    if section is None:
        return Reply(texts.no_such_section(version, shown, cite, unit="节" if clause is None else "款"))
    if clause is not None:
        if not 1 <= clause <= len(section.clauses):
            return Reply(texts.no_such_clause(section, shown, cite))
        return Reply(note + texts.terms_clause(version, section, clause, cite))
    return Reply(note + texts.terms_section(version, section))


@router.command("条款", "协议", args=OPEN + rf"(?:{_VERSION}\s+)?{PREAMBLE_WORDS}" + CLOSE)
async def terms_preamble(chat: Chat) -> Reply:
    """条款 前言: the preamble (「您使用我们的服务即表示您已同意本协议的全部条款」…),
    which the Q&A quotes as 前言.N and no section holds."""
    (version_id,) = chat.args
    try:
        version, cite, note = await _version_named(chat, version_id)
    except VersionNotFound as exc:
        return Reply(texts.no_such_version(version_id, exc))
    return Reply(note + texts.terms_preamble(version, cite))


async def _version_named(chat: Chat, version_id: str | None) -> tuple[AgreementVersion, str, str]:
    """The version a command names (the one in force when none), how replies
    cite it in commands ("" for the one in force), and the note that goes
    before a withdrawn one's text ("" for others); VersionNotFound for none such."""
    current = await chat.services.terms.current()
    version, note = await _readable(chat, version_id) if version_id else (current, "")
    return version, "" if version.version == current.version else f"{version.version} ", note


async def _readable(chat: Chat, version_id: str) -> tuple[AgreementVersion, str]:
    """A version a user asks to read (:meth:`Terms.readable`), and the note
    that goes before a withdrawn one's text ("" for others)."""
    version, withdrawal = await chat.services.terms.readable(version_id)
    return version, texts.withdrawn_note(withdrawal_text(withdrawal)) if withdrawal else ""


@router.command("条款", "协议", args=OPEN + _VERSION_ALONE + CLOSE)
async def terms_of_version(chat: Chat) -> Reply:
    """条款 2026-12-01: that version's sections (条款 v9: there is no such version)."""
    (version_id,) = chat.args
    terms = chat.services.terms
    current = await terms.current()
    try:
        version, note = await _readable(chat, version_id)
    except VersionNotFound as exc:
        return Reply(texts.no_such_version(version_id, exc))
    if version.version == current.version:
        return Reply(await _overview(chat, current))
    return Reply(note + texts.version_overview(version, current, withdrawn=bool(note)))


# -- consent -----------------------------------------------------------------------


@router.command("同意", exact=True)
@router.menu(MENU_ACCEPT)
async def accept(chat: Chat) -> Reply:
    services = chat.services
    state = await chat.fresh_consent()
    if not state.accepted and (shown := await _version_changed_since_asked(chat, state, "同意")) is not None:
        return shown
    state, added = await services.consents.accept(chat.openid, await origin(chat), state=state)
    chat.forget_consent()
    text = texts.accepted(state.current) if added else texts.already_accepted(state.current)
    text = texts.with_upcoming(text, await services.terms.pending(), accepted=True)
    resume = await _pop_resume(chat)
    word = _dialog_command(resume) if resume else None
    if chat.dialog is not None and word is not None and word not in THROUGH_DIALOGS:
        # 注册 tapped in the menu while registration was open: the open dialog goes on
        # (remind_open_dialog says where), not a command it would refuse as an answer.
        resume = None
    if resume:
        follow_up = await chat.run_command(resume)
        if follow_up is not None and follow_up.text:
            text += "\n\n" + follow_up.text
    return Reply(text)


@router.command("不同意", exact=True)
@router.menu(MENU_DECLINE)
async def decline(chat: Chat) -> Reply:
    state = await chat.fresh_consent()
    # A refusal, too, is recorded only for the version the user was shown (one who
    # accepted the version in force has seen it: their 不同意 is of that one).
    if not state.accepted and (shown := await _version_changed_since_asked(chat, state, "不同意")) is not None:
        return shown
    if state.accepted and (pending := await chat.services.terms.pending()):
        return Reply(texts.decline_upcoming(state.current, pending[0]))
    state, added = await chat.services.consents.decline(chat.openid, await origin(chat), state=state)
    chat.forget_consent()
    await _pop_resume(chat)  # the pending action will not happen
    await chat.asked_to_accept(state.current.version)  # the reply invites a 同意 to this version
    return Reply(texts.declined(state.current, again=not added))


async def _version_changed_since_asked(chat: Chat, state: ConsentState, choice: str) -> Reply | None:
    """When the user was asked about one version and answers (``choice``)
    after another took effect, they have not seen what they would choose on:
    the reply that shows it and asks again; else None."""
    services = chat.services
    # Only a version that took effect since a prompt could still be remembered
    # can differ from the one asked about (and the Redis read is spared otherwise).
    if state.current.effective_at <= services.clock() - dt.timedelta(seconds=PROMPT_TTL):
        return None
    try:
        asked = await chat.version_asked()
    except RedisUnavailable:
        return None  # taken for the version in force, as asked_to_accept says
    if asked == state.current.version:
        return None
    if asked is None:
        # Not remembered (Redis lost its data, or the prompt could not be
        # noted): the version in force is the only one they can have been
        # shown if they followed since it took effect; else they are shown it.
        follower = await services.followers.get(chat.openid)
        since = follower.subscribed_at if follower is not None else None
        if since is not None and since > state.current.effective_at:
            return None
        if state.status != "outdated":
            await chat.asked_to_accept(state.current.version)
            return Reply(texts.consent_unconfirmed(state.current, choice))
        asked = state.latest.version  # shown the version they accepted, at least
    await chat.asked_to_accept(state.current.version)
    changed = await services.terms.since(asked)
    if state.status == "outdated" and asked == state.latest.version:
        # They accepted that version and were not asked again yet: the usual
        # prompt, now shown (the middleware would repeat it on the next message).
        with contextlib.suppress(RedisUnavailable):
            await services.dialogs.once(chat.openid, f"reconsent:{state.current.version}")
        return Reply(texts.reconsent(state.current, asked, changed))
    return Reply(texts.superseded_before_consent(state.current, asked, changed, choice))


@router.command("撤回同意", exact=True)
@router.menu(MENU_WITHDRAW)
async def withdraw(chat: Chat) -> Reply:
    try:
        _state, version = await chat.services.consents.withdraw(chat.openid, await origin(chat), state=await chat.fresh_consent())
    except ConsentRefused as exc:
        return Reply(exc.message)
    chat.forget_consent()
    await chat.asked_to_accept((await chat.services.terms.current()).version)
    return Reply(texts.withdrawn(version))


#: Near misses of the three replies above ("我同意", "同意。"). Only the exact
#: words count as a choice, but answering these from the Q&A (a quoted
#: clause) would let the user believe they had chosen.
@router.command(*NEAR_CONSENT, args=f"[{re.escape(STATEMENT_END.strip())}]*")
async def near_consent(chat: Chat) -> Reply:
    return Reply(texts.consent_exact_words(_choice_meant(chat.message.text)))


@router.command("同意", "不同意", "我同意", "我不同意", args=r"(?:版本\s*)?([0-9a-z][0-9a-z._-]{0,63})")
async def choice_of_a_version(chat: Chat) -> Reply:
    """同意 2026-v5: a choice naming a version. Not recorded (only the exact word
    is), but answered as to that version, not by the Q&A."""
    word = "不同意" if "不" in chat.message.text.split()[0][:3] else "同意"
    terms = chat.services.terms
    current = await terms.current()
    try:
        named = await terms.get(chat.args[0])
    except VersionNotFound as exc:
        return Reply(f"{exc.message}。现行版本是 {current.version}。" + texts.consent_exact_words(word))
    pending = {v.version: v for v in await terms.pending()}
    return Reply(texts.choice_of_a_version(word, named, current, named.version in pending))


@router.command(*own_questions.STATUS_WORDS, args=f"[{re.escape(TRAILING_PUNCTUATION.strip())}]*")
async def consent_status(chat: Chat) -> Reply:
    """Which version the user accepted, and when (or that they have not)."""
    return Reply(await own_questions.consent_status_text(chat))


def _choice_meant(text: str) -> str:
    """Which of the three exact replies a near miss meant."""
    return "不同意" if "不同意" in text else "撤回同意" if ("撤" in text or "取消" in text) else "同意"


async def _waiting_command(chat: Chat) -> str | None:
    """The command waiting for the user's consent, if any (kept)."""
    try:
        return await chat.services.dialogs.waiting_command(chat.openid)
    except RedisUnavailable:
        return None


async def _pop_resume(chat: Chat) -> str | None:
    try:
        return await chat.services.dialogs.pop_resume(chat.openid)
    except RedisUnavailable:
        return None


#: Commands after which one held for consent still runs on 同意: reading the
#: agreement, or one's consent, is on the way to agreeing.
_KEEP_HELD = {normalize_command(w) for w in ("同意", "条款", "协议", "帮助", *own_questions.STATUS_WORDS)}


@router.middleware
async def forget_held_command(chat: Chat, call_next) -> Reply | None:
    """A command held for consent (注册 asked for 同意 first) is dropped when the
    user turns to another command: it ran on a 同意 many messages later, after
    撤回同意 and 导出我的数据, unasked."""
    if chat.message.kind == "text" and chat.message.text:
        word = router.command_of(chat.message.text)
        if word is not None and word not in _KEEP_HELD:
            await _pop_resume(chat)
    return await call_next(chat)


@router.middleware
async def ask_again_after_amendment(chat: Chat, call_next) -> Reply | None:
    """A user whose acceptance is of an older version is asked again, once per
    version, at their next interaction (a message or a menu click)."""
    message = chat.message
    interactive = message.kind != "event" or message.event == "click"
    if not interactive or message.text in CONSENT_WORDS or message.event_key in (MENU_ACCEPT, MENU_DECLINE):
        return await call_next(chat)
    try:
        if len(await chat.services.terms.versions()) < 2:
            return await call_next(chat)  # one version ever: nobody can need to consent again
        state = await chat.consent()
    except MongoUnavailable:
        return await call_next(chat)
    reply = await call_next(chat)
    if state.status != "outdated":
        return reply
    try:
        first = await chat.services.dialogs.once(chat.openid, f"reconsent:{state.current.version}")
    except RedisUnavailable:
        first = True
    if not first:
        return reply
    await chat.asked_to_accept(state.current.version)
    prompt = texts.reconsent(state.current, state.latest.version, await chat.services.terms.since(state.latest.version))
    if reply is None:
        return Reply(prompt)
    # A reply that asks too (同意状态) asks once, after the changes.
    return Reply(f"{prompt}\n\n{texts.without_consent_prompt(reply.text, state.current).rstrip()}")


# -- the user's own data -----------------------------------------------------------


@router.command("导出我的数据", "导出数据")
async def export_data(chat: Chat) -> Reply:
    services = chat.services
    return Reply(await services.exports.summary_with_link(chat.openid, services.public_url))


# -- registration and the merchant account -----------------------------------------

#: Other ways of saying 退订 X / 订阅 X; taken only with a category's full name
#: after them (关闭账户, 关闭服务 are no notice settings), and with 了 after it
#: (不要再发服务公告了).
OPT_OUT_WORDS = ("取消订阅", "关闭", "不再接收", "不要再发", "别再发", "不想收")
OPT_IN_WORDS = ("开启", "打开", "重新订阅", "恢复订阅", "恢复接收")
_FULL_NAMES = sorted({*CATEGORIES.values(), *CATEGORIES, "其它", "全部通知", "所有通知"}, key=len, reverse=True)
_CATEGORY_NAMED = "[“\"'「]?(" + "|".join(map(re.escape, _FULL_NAMES)) + ")[”\"'」]?了?吧?[。.!！~～]*"


#: 我的账户 and the other ways people name their account (账号 as often as 账户).
MY_ACCOUNT_WORDS = ("我的账户", "我的帐户", "我的账号", "我的帐号", "账户", "帐户", "账号", "帐号",
                    "我的资料", "我的信息", "查看资料", "账户信息", "账号信息")
#: 注销账户 and its other wordings.
CLOSE_WORDS = ("注销账户", "注销帐户", "注销账号", "注销帐号", "注销", "我要注销", "申请注销")

#: Commands that still work in the middle of a dialog (the dialog stays where it was).
THROUGH_DIALOGS = {
    normalize_command(w)
    for w in ("帮助", "条款", "协议", "同意", "不同意", "撤回同意", *MY_ACCOUNT_WORDS, "导出我的数据", "通知设置", "退订", "订阅",
              *OPT_OUT_WORDS, *OPT_IN_WORDS, *own_questions.STATUS_WORDS)
}


@router.command("注册", "商家注册", "我要注册", "我想注册", "申请注册", "注册商家", "注册账号", "注册账户", "注册帐号",
                "注册帐户", "商家入驻", "我要入驻", "申请入驻", "入驻")
@router.menu(MENU_REGISTER)
async def register(chat: Chat) -> Reply:
    prompt = await require_consent(chat, "注册")
    if prompt is not None:
        return prompt
    merchant = await chat.services.merchants.get(chat.openid)
    if merchant is not None and merchant.status == "suspended":
        return Reply(await _suspended_text(chat))
    if merchant is not None and merchant.status != "closed":
        return Reply(texts.already_registered(STATUSES[merchant.status]))
    if merchant is not None and await chat.services.merchants.barred_from_registering(chat.openid):
        return Reply(texts.REREGISTRATION_BARRED)  # said now, not after the whole dialog
    return await chat.services.engine.start(chat, REGISTRATION, context={"seen": profile_stamp(merchant)})


@router.state("registration")
async def registration_step(chat: Chat):
    word = _dialog_command(chat.message.text)
    if word in THROUGH_DIALOGS:
        return PASS  # handled as usual; remind_open_dialog adds where the dialog stands
    if word is not None:
        # Another command is not an answer (a name of "注册" is a mistake).
        engine = chat.services.engine
        return Reply(texts.dialog_command_inside(REGISTRATION.title, chat.message.text.strip(), amending(chat))
                     + "\n\n" + engine.current_prompt(chat, REGISTRATION))
    if chat.message.kind != "text":  # a photo of the licence is no answer: say so, ask again
        return Reply(texts.DIALOG_TEXT_ONLY + "\n\n" + chat.services.engine.current_prompt(chat, REGISTRATION))
    return await chat.services.engine.handle(chat, REGISTRATION)


@router.middleware
async def remind_open_dialog(chat: Chat, call_next) -> Reply | None:
    """A command answered in the middle of registration says the dialog still waits."""
    reply = await call_next(chat)
    if (reply is None or chat.dialog is None or not chat.dialog.name.startswith(f"{REGISTRATION.name}:")
            or _dialog_command(chat.message.text) not in THROUGH_DIALOGS):
        return reply
    try:  # the command may have ended it (同意 resuming 确认)
        still = await chat.services.dialogs.load(chat.openid)
    except RedisUnavailable:
        return reply
    if still is None or not still.name.startswith(f"{REGISTRATION.name}:"):
        return reply
    declined = False
    if _dialog_command(chat.message.text) in ("不同意", "撤回同意"):  # the form then cannot be sent as it stands
        with contextlib.suppress(Exception):  # the reminder without it, if the record cannot be read
            declined = not (await chat.consent()).accepted
    return Reply(reply.text + "\n\n" + texts.dialog_waiting(REGISTRATION.title, bool(still.data.get("amending")), declined))


@router.command("修改资料")
async def edit_profile(chat: Chat) -> Reply:
    merchant = await chat.services.merchants.get(chat.openid)
    if merchant is None or merchant.status == "closed":
        return Reply(texts.NOT_REGISTERED)
    if merchant.status == "suspended":
        return Reply(await _suspended_text(chat))
    # Changing the profile needs the version in force accepted (as 注册 and the
    # API's PUT): asked now, not after the whole dialog at 确认.
    prompt = await require_consent(chat, "修改资料")
    if prompt is not None:
        return prompt
    return await chat.services.engine.start(chat, REGISTRATION, answers=profile_answers(merchant), at_summary=True,
                                            context={"seen": profile_stamp(merchant)})


@router.command(*MY_ACCOUNT_WORDS)
@router.menu(MENU_ACCOUNT)
async def my_account(chat: Chat) -> Reply:
    merchant = await chat.services.merchants.get(chat.openid)
    if merchant is None:
        filling = chat.dialog is not None and chat.dialog.name.startswith(REGISTRATION.name)
        # Not "reply 注册 to register": the form is open, and 注册 there is no answer.
        return Reply(texts.NOT_REGISTERED_FILLING if filling else texts.NOT_REGISTERED)
    # A closed account's fields were erased: listing each as "（未填写）" read as a blank form.
    lines = [] if merchant.status == "closed" else [f"{step.label}：{step.show(value)}" for step, value in _profile_lines(merchant)]
    reason = await chat.services.merchants.status_reason(merchant)
    barred = merchant.status == "closed" and await chat.services.merchants.barred_from_registering(chat.openid)
    consent = (await chat.consent()).status if merchant.status in ("pending_review", "active") else "accepted"
    return Reply(texts.account_overview(lines, merchant.status, STATUSES[merchant.status], reason, barred, consent))


@router.command(*CLOSE_WORDS)
async def close_account(chat: Chat) -> Reply:
    merchant = await chat.services.merchants.get(chat.openid)
    if merchant is None:
        return Reply(texts.NOT_REGISTERED)
    if merchant.status == "closed":
        barred = await chat.services.merchants.barred_from_registering(chat.openid)
        return Reply(texts.ALREADY_CLOSED_BARRED if barred else texts.ALREADY_CLOSED)
    # The status the user is told of: confirmed after it changed, the closure is asked again.
    await chat.services.dialogs.save(chat.openid, DialogState("close_account:confirm", {"status": merchant.status}))
    if merchant.status == "suspended":
        return Reply(texts.CLOSE_WHILE_SUSPENDED + "\n" + texts.CLOSE_CONFIRM)
    return Reply(texts.CLOSE_CONFIRM)


async def _answer_mid_dialog(chat: Chat) -> str | None:
    """A question asked while a choice waits: from the user's record (我同意了吗),
    else the agreement's clause, if one answers it."""
    own = await own_answer(chat, chat.message.text)
    if own is not None:
        return own
    try:
        answer = await chat.services.answers.answer(chat.message.text, chat.openid, chat.message.channel)
    except Exception:  # noqa: BLE001 - the choice is asked again all the same
        log.warning("answering a question during a closure failed", exc_info=True)
        return None
    return answer.text if answer.kind == "answer" else None


@router.command("确认注销", exact=True)
async def confirm_close_unasked(chat: Chat) -> Reply:
    """确认注销 with no closure asked for (the dialog's own answer is handled below):
    said so, rather than a question for the agreement's Q&A."""
    return Reply(texts.NO_CLOSURE_ASKED)


#: What confirms a closure once asked: 确认注销 as the prompt says, and 确认 / 确定
#: typed alone (the question was explicit); not 好的, 是 or 提交, which read as a nod.
CLOSE_CONFIRMATIONS = frozenset(("确认注销", "确定注销", "确认", "确定"))


@router.state("close_account")
async def close_account_confirm(chat: Chat):
    if _dialog_command(chat.message.text) in THROUGH_DIALOGS:  # 条款 2 as well as 帮助, as in registration
        return PASS
    word = control_word(chat.message.text)
    if word == CANCEL:
        await chat.services.dialogs.clear(chat.openid)
        return Reply(texts.CLOSE_CANCELLED)
    if bare_word(chat.message.text) not in CLOSE_CONFIRMATIONS:
        # A question before deciding (注销后我的数据还在吗) is answered, then the choice asked again.
        answer = await _answer_mid_dialog(chat) if own_questions.is_asking(chat.message.text) else None
        return Reply(f"{answer}\n\n{texts.CLOSE_CHOICE}" if answer else texts.CLOSE_CHOICE)
    asked_at = (chat.dialog.data or {}).get("status") if chat.dialog is not None else None
    await chat.services.dialogs.clear(chat.openid)
    merchant = await chat.services.merchants.get(chat.openid)
    if merchant is None or merchant.status == "closed":  # closed meanwhile (the mini-program, an admin)
        return await close_account(chat)
    if asked_at is not None and merchant.status != asked_at:
        # Suspended since the question (an admin): closing now bars re-registration,
        # which the confirmation asked for did not say. Asked again, with that said.
        again = await close_account(chat)
        return Reply(texts.close_status_changed(STATUSES[merchant.status]) + "\n" + again.text)
    try:
        await chat.services.merchants.set_status(chat.openid, "closed", "用户在公众号申请注销", by="user")
    except AccountRefused as exc:
        return Reply(exc.message)
    await chat.services.dialogs.clear_draft(chat.openid, REGISTRATION.name)
    barred = await chat.services.merchants.barred_from_registering(chat.openid)
    return Reply(texts.CLOSED_BARRED if barred else texts.CLOSED)


def _profile_lines(merchant):
    answers = profile_answers(merchant)
    return [(step, answers.get(step.name)) for step in REGISTRATION.applicable(answers) if step.editable]


async def _suspended_text(chat: Chat) -> str:
    return texts.suspended(await chat.services.merchants.suspension_reason(chat.openid) or "未说明")


# -- notices ------------------------------------------------------------------------------


@router.command("通知设置", "通知", "通知设定")
async def notice_settings(chat: Chat) -> Reply:
    return Reply(settings_text(await chat.services.preferences.settings(chat.openid)))


@router.command("退订", "订阅", args=r"(.+)")
@router.command(*OPT_OUT_WORDS, *OPT_IN_WORDS, args=_CATEGORY_NAMED)
async def change_subscription(chat: Chat) -> Reply:
    (name,) = chat.args
    try:
        categories = categories_from_name(name)
    except Invalid as exc:
        return Reply(exc.message + texts.UNKNOWN_CATEGORY_EXAMPLE)
    word = router.command_of(chat.message.text)
    on = word == "订阅" or word in OPT_IN_WORDS
    changes = [await chat.services.preferences.change(chat.openid, category, on) for category in categories]
    if len(categories) > 1:
        return Reply(texts.opted_in_to_all(any(changes)) if on else texts.opted_out_of_all(any(changes)))
    category, changed = categories[0], changes[0]
    label = CATEGORIES[category]
    if on:
        return Reply(texts.opted_in(label, changed))
    return Reply(texts.opted_out(label, category in IMPORTANT_BY_DEFAULT, changed, always_important=category == "amendment"))


def _dialog_command(text: str) -> str | None:
    """The command ``text`` is inside a dialog (条款 2 and 退订 服务公告 too, not only bare
    words); ``None`` for an answer, such as the name 订阅号运营工作室."""
    word = router.command_of(text)
    if word in ("退订", "订阅") and not _names_a_category(text):
        return None
    return word


def _names_a_category(text: str) -> bool:
    """Whether ``退订 X`` / ``订阅 X`` names a notice category (or none: the bare word)."""
    rest = normalize_command(text)[2:].strip()
    if not rest:
        return True
    try:
        categories_from_name(rest)
    except Invalid:
        return False
    return True


@router.command("退订", "订阅", "取消订阅", "重新订阅", "恢复订阅")
async def subscription_usage(chat: Chat) -> Reply:
    return Reply(settings_text(await chat.services.preferences.settings(chat.openid)))


@router.event("templatesendjobfinish")
async def template_finished(chat: Chat) -> None:
    """WeChat reports the fate of a template message (success or why it failed)."""
    msgid = chat.message.raw.get("MsgID") or chat.message.raw.get("MsgId") or ""
    status = chat.message.raw.get("Status", "")
    if msgid.isascii() and msgid.isdigit() and int(msgid) < 2**63:  # WeChat's ids are 64-bit; a hostile one is not
        await chat.services.broadcasts.template_result(int(msgid), status)
    return None


# -- everything else ---------------------------------------------------------------


@router.message("image", "voice", "video", "shortvideo", "location", "link", "miniprogrampage")
async def only_text(chat: Chat) -> Reply:
    return Reply(texts.ONLY_TEXT)


@router.fallback
async def free_text(chat: Chat) -> Reply:
    """A question in the user's words: answered by quoting the agreement."""
    # The word itself only (no synonyms, no question mark): outside a dialog,
    # "算了" or "取消？" are talk, and must not delete a draft.
    bare = normalize_command(chat.message.text).rstrip(STATEMENT_END)
    if not chat.state_unknown and bare in _DIALOG_WORDS:
        return await _dialog_word_without_dialog(chat, bare)
    if not chat.state_unknown and control_word(chat.message.text) == CANCEL:
        # 取消注册, 算了, 退出 … outside a dialog are talk (they discard no draft),
        # but a command the consent gate held is dropped by them as by 取消.
        pending = await _pop_resume(chat)
        if pending:
            return Reply(texts.pending_cancelled(pending))
    own = await own_answer(chat, chat.message.text)
    if own is not None:
        return Reply(own)
    if _ASKS_ACCOUNT_STATUS.search(bare):
        # 为什么被退回 / 为什么被暂停: the user's own record says why, not the agreement.
        why = await _own_account_reason(chat)
        if why is not None:
            return Reply(why)
    if BARE_PLACE.fullmatch(bare):  # 7.1, 第4.2款, 第三节 sent alone: a place to read, not a question
        return await chat.run_command(f"条款 {bare}")
    parts = [part for part in re.split(r"[，,、。.!！~～\s]+", bare) if part]
    choice = any(part in NEAR_CONSENT for part in parts)
    if "".join(parts) in NEAR_CONSENT or (parts and all(part in _YES or part in NEAR_CONSENT for part in parts)
                                          and (choice or not await _has_accepted(chat))):
        # "同 意", "好的，同意", or 好的 / 接受 / OK to the consent prompt: not
        # recorded, and a quoted clause or "不客气" would let the user believe it was.
        return Reply(texts.consent_exact_words(_choice_meant("".join(parts))))
    waiting = None if chat.state_unknown else await _waiting_command(chat)
    if waiting is not None and _dialog_word(chat.message.text):
        # 注册 asked for consent first; 个人, a phone number … typed next answer a form not begun
        # (they got the Q&A's clauses, and the details landed in the admins' question log).
        return Reply(texts.waiting_for_consent(waiting))
    if (waiting is None and not chat.state_unknown and control_word(chat.message.text) not in DIALOG_WORDS
            and _dialog_word(chat.message.text) and await _unfinished_registration(chat)):
        # A phone number, a credit code … for a registration whose dialog ended
        # (IDLE_TTL): the draft offered back, not the Q&A's "no clause answers this".
        offer = await register(chat)
        return Reply(f"{texts.DIALOG_TIMED_OUT}\n\n{offer.text}")
    for_the_form = waiting is not None and not is_question(chat.message.text)  # 王秀英, not 手机会公开吗
    answer = await chat.services.answers.answer(chat.message.text, chat.openid, chat.message.channel,
                                                unanswered_too=not for_the_form)
    if for_the_form and answer.kind != "answer":
        return Reply(texts.waiting_for_consent(waiting))  # a name typed for the form, not a question
    if chat.state_unknown:
        # Perhaps an answer to a dialog whose state cannot be read now. A
        # dialog's own word (取消, 个人, 跳过 …) gets only that; anything else
        # the Q&A's own reply (a clause, "not covered" with the nearest
        # sections, or a greeting), which needs no Redis, then the same words.
        if _dialog_word(chat.message.text):
            return Reply(texts.DIALOG_UNAVAILABLE)
        return Reply(f"{answer.text}\n\n{texts.DIALOG_UNAVAILABLE}")
    text = chat.message.text
    hint = texts.question_hint(text)
    if hint is not None and answer.kind == "abstain":
        return Reply(with_hint(answer, hint))  # 我要改手机号: how to do it is the answer
    if hint in (None, texts.EDIT_PROFILE_HINT) and any(word in text for word in texts.REGISTRATION_WORDS):
        hint = await _registration_hint(chat)  # says what this user's account allows (closed, barred …)
    if hint is None and answer.kind != "answer" and await _unfinished_registration(chat):
        # Perhaps an answer to a registration step whose dialog expired (30 min): offer to resume.
        hint = texts.UNFINISHED_REGISTRATION
    return Reply(f"{answer.text}\n\n{hint}" if hint else answer.text)


#: A question about why the user's own account was returned for correction or suspended.
_ASKS_ACCOUNT_STATUS = re.compile(r"退回|审核(?:没|不|未)通过|(?:为什么|为啥|怎么).*(?:暂停|冻结|封)|被(?:暂停|冻结|封)")


async def _own_account_reason(chat: Chat) -> str | None:
    """Why the user's account is returned for correction or suspended, if it is (else None: the Q&A answers)."""
    try:
        merchant = await chat.services.merchants.get(chat.openid)
        reason = await chat.services.merchants.status_reason(merchant) if merchant is not None else None
    except MongoUnavailable:
        return None  # the Q&A answers meanwhile
    if merchant is not None and merchant.status == "suspended":
        return texts.suspended(reason or "未说明")
    if merchant is not None and merchant.status == "closed":  # by 微拓, with its reason
        return texts.closed_by_us(reason) if reason else None
    return texts.returned_for_correction(reason) if reason else None


def _dialog_word(text: str) -> bool:
    """Whether ``text`` answers a dialog's step rather than asks a question:
    its words (取消, 确认, 个人, 企业, 跳过, 是/否, a step's number) or a
    phone number, e-mail address or credit code."""
    word = control_word(text)
    if word in DIALOG_WORDS or is_entity_type(word) or means_no_email(word) or re.fullmatch(r"\d{1,2}", word):
        return True
    for parse in (lambda t: parse_yes_no(t, ""), parse_phone, parse_email, parse_credit_code):
        with contextlib.suppress(Invalid):
            parse(text)
            return True
    return False


#: Ways of saying yes that a user who has not accepted the agreement may mean as 同意.
_YES = frozenset(("好", "好的", "好滴", "行", "可以", "是", "是的", "嗯", "嗯嗯", "对", "没问题", "接受", "我接受",
                  "愿意", "我愿意", "同意的", "同意了", "我同意了", "已同意", "确定", "ok", "okay", "yes", "y",
                  "agree", "iagree", "accept"))


async def _has_accepted(chat: Chat) -> bool:
    """Whether the user accepted the version in force (when it cannot be read: as if so, the Q&A answers)."""
    try:
        return (await chat.consent()).accepted
    except (*MongoUnavailable, *RedisUnavailable):
        return True


#: A dialog's own words: sent after the dialog ended (its 30 minutes passed), they are no question.
_DIALOG_WORDS = (CANCEL, BACK, CONFIRM, RESUME, RESTART)


async def _dialog_word_without_dialog(chat: Chat, word: str) -> Reply:
    unfinished = await _unfinished_registration(chat)
    if word == CANCEL:
        # 取消 ends what is left: a command the consent gate held (同意 must no
        # longer start it), and a registration draft (it holds personal data).
        pending = await _pop_resume(chat)
        if unfinished:
            await chat.services.dialogs.clear_draft(chat.openid, REGISTRATION.name)
        if pending:
            # The draft went too: said, as the dialog's own 取消 says what was not kept.
            return Reply(texts.pending_cancelled(pending) + (f"\n{texts.DRAFT_DISCARDED}" if unfinished else ""))
        if unfinished:
            return Reply(texts.DRAFT_DISCARDED)
    elif unfinished:
        offer = await register(chat)  # offers to resume the draft (继续) or start again
        if word == RESUME and await _at_resume_offer(chat):
            # 继续 asked for it already: resumed at once (it was offered, to be answered 继续 again).
            return await chat.services.engine.handle(chat, REGISTRATION)
        return offer
    return Reply(texts.NO_DIALOG_OPEN.format(word=word))


async def _at_resume_offer(chat: Chat) -> bool:
    """Whether the user's registration now waits at its resume offer (``chat.dialog`` loaded)."""
    chat.dialog = await chat.services.dialogs.load(chat.openid)
    return chat.dialog is not None and chat.dialog.name == f"{REGISTRATION.name}:{RESUME_STEP}"


async def _registration_hint(chat: Chat) -> str:
    """What to reply to register, as this account stands (no invitation that 注册 would refuse)."""
    merchant = await chat.services.merchants.get(chat.openid)
    if merchant is None:
        return texts.REGISTRATION_HINT
    if merchant.status == "closed":
        barred = await chat.services.merchants.barred_from_registering(chat.openid)
        return texts.REREGISTRATION_BARRED if barred else texts.REGISTRATION_HINT
    if merchant.status == "suspended":
        return await _suspended_text(chat)
    return texts.REGISTERED_HINT


async def _unfinished_registration(chat: Chat) -> bool:
    """A registration draft that 注册 would offer to resume (not a merchant's 修改资料)."""
    draft = await chat.services.dialogs.load_draft(chat.openid, REGISTRATION.name)
    if not (draft and draft.get("answers")):
        return False
    merchant = await chat.services.merchants.get(chat.openid)
    return merchant is None or merchant.status == "closed"
