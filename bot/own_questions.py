"""Questions about the asker's own consent, answered from their record, not the agreement.

"我同意了吗" is answered with the user's own consent (version and time, or
none), and "不同意会怎样" with what follows from declining and the
agreement's own sentence on it; the Q&A would quote whichever clause it
ranks first. One place for both, which chat (:mod:`bot.chat`) and the
mini-program's ``/api/v1/qa`` share; each words the answer for its screen.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bot import texts
from bot.agreement import AgreementVersion
from bot.router import normalize_command
from bot.validation import TRAILING_PUNCTUATION

if TYPE_CHECKING:
    from bot.chat_context import Chat

#: The kinds :func:`asked` returns.
OWN_CONSENT = "consent_status"
DECLINING = "declining"
CHOICE = "consent_choice"

#: A consent choice in words (同意, 我不同意, 撤回同意 …). Chat records one only
#: when it is the exact word alone (and says so to these near misses); the app
#: records one by its buttons: typed into its Q&A, it is no question either.
NEAR_CONSENT = ("同意", "不同意", "撤回同意", "我同意", "我不同意", "我要撤回同意", "同意协议", "同意条款",
                "同意服务协议", "我同意协议", "我同意条款", "不同意协议", "不同意条款", "撤销同意", "取消同意")

#: A user asking whether they accepted ("我同意了吗", "我有没有同意协议",
#: "我同意的是哪个版本"). A question word is required: "我同意了" says yes.
_ASKS_OWN_CONSENT = re.compile(
    r"我?(?:之前|以前)?(?:"
    r"(?:是否|有没有|有无|是不是)(?:已经|已)?(?:同意|接受)(?:过|了)?(?:本?协议|条款|用户协议|服务协议)?(?:了|过)?(?:吗|么)?"
    r"|(?:已经|已)?(?:同意|接受)(?:过|了)?(?:本?协议|条款|用户协议|服务协议)?(?:了|过)?(?:吗|么|没有|没|吧)"
    r"|(?:同意|接受)(?:的|了|过)(?:是)?(?:(?:哪个|哪一个|什么)版本|哪一?版本?)(?:的协议|的条款)?"
    r"|的同意状态)"
)

#: A user asking what declining (or withdrawing) means for them.
_ASKS_WHAT_DECLINING_DOES = re.compile(
    r"(?:如果|要是|假如|万一)?我?(?:不同意|拒绝|撤回同意)了?(?:本?协议|条款|这个协议|协议条款)?(?:的话|后|之后|以后)?"
    r"(?:(?:会|将)?(?:怎样|怎么样|如何|有什么后果|有什么影响|有啥影响|有啥后果)|怎么办|呢|后果是什么"
    r"|(?:还)?(?:能|可以)(?:继续)?(?:使用|用)(?:服务|你们的服务)?)(?:吗|呢|啊|呀)?"
)


#: A user changing their mind, or asking whether they may (同意了还能反悔吗, 我不想同意了,
#: 撤回同意后我的商家账户会怎样, 不同意能注册吗): the same answer, which says how to
#: withdraw and what stops. 后悔 alone is no such question (买了后悔了能退款吗).
_CHANGING_MIND = re.compile(
    r".*同意.*(?:反悔|后悔).*|.*(?:反悔|后悔).*同意.*|.*(?:不想|不再|不愿意?)(?:再)?同意.*"
    r"|.*(?:撤回|取消|撤销)(?:了)?同意(?:了)?(?:之后|以后|后|的话).+"
    r"|.*同意(?:了|之后|以后|后)?(?:还)?(?:能|可以|能不能|可不可以)(?:撤回|取消|撤销|收回).*"
    r"|.*(?:能|可以|能不能|可不可以)(?:撤回|取消|撤销|收回)同意.*"
    r"|(?:我)?(?:不同意|没同意|拒绝)(?:协议|条款)?(?:的话)?(?:还)?(?:能|可以|能不能|可不可以)(?:注册|开店|做商家).*"
)

#: Chat's command for the same (its router takes them first); the app has no commands.
STATUS_WORDS = ("同意状态", "我的同意")


def asked(text: str) -> str | None:
    """:data:`OWN_CONSENT`, :data:`DECLINING`, :data:`CHOICE`, or None for any other question."""
    words = normalize_command(text).rstrip(TRAILING_PUNCTUATION).replace(" ", "")
    if words in STATUS_WORDS or _ASKS_OWN_CONSENT.fullmatch(words):
        return OWN_CONSENT
    if _ASKS_WHAT_DECLINING_DOES.fullmatch(words):
        return DECLINING
    if words in NEAR_CONSENT:
        return CHOICE
    if _CHANGING_MIND.fullmatch(words):
        return DECLINING
    return None


def declining_sentence(version: AgreementVersion) -> tuple[str, str] | None:
    """The agreement's first sentence on not agreeing, with its place
    (``("7.1", "…。")``), or None if it has none."""
    for section in version.sections:
        for number, clause in enumerate(section.clauses, 1):
            sentence = next((s for s in clause.split("。") if "不同意" in s), None)
            if sentence:
                return f"{section.number}.{number}", sentence.strip() + "。"
    return None


async def own_answer(chat: "Chat", text: str) -> str | None:
    """Chat's answer to ``text`` when it asks about the user's own consent
    (their record) or what declining does; None for any other question.
    Asked outside a dialog and at a dialog's step alike."""
    kind = asked(text)
    if kind == OWN_CONSENT:
        return await consent_status_text(chat)
    if kind == DECLINING:
        found = declining_sentence(await chat.services.terms.current())
        return texts.what_declining_does(*(found or (None, None)))
    return None


async def consent_status_text(chat: "Chat") -> str:
    """Which version the user accepted, and when (or that they have not)."""
    state = await chat.consent()
    latest = state.latest
    answer = texts.consent_status(state.status, state.current, latest.version if latest else None,
                                  latest.at if latest else None)
    if state.accepted:  # what they will be asked about next
        answer = texts.with_upcoming(answer, await chat.services.terms.pending())
    return answer
