"""Questions about the asker's own consent and the product's own record, answered from them, not the agreement.

"我同意了吗" is answered with the user's own consent (version and time, or
none), "不同意会怎样" with what follows from declining and the agreement's
own sentence on it, and "协议最近改了什么" with what the latest published
version changed (or that none changed the agreement since the first); the
Q&A would quote whichever clause it ranks first (7.1, how amendments work,
for the last). One place for all, which chat (:mod:`bot.chat`) and the
mini-program's ``/api/v1/qa`` share; each words the answer for its screen.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bot import texts
from bot.agreement import AgreementVersion
from bot.router import normalize_command
from bot.validation import TRAILING_PUNCTUATION, is_question

if TYPE_CHECKING:
    from bot.chat_context import Chat
    from bot.terms import Terms

#: The kinds :func:`asked` returns.
OWN_CONSENT = "consent_status"
DECLINING = "declining"
CHOICE = "consent_choice"
CHANGES = "changes"

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

#: A user asking what the agreement's amendments changed ("协议最近改了什么", "条款有什么变化",
#: "这次修改的内容是什么"): the published versions answer it. A question about the rule
#: itself ("协议修改了什么时候生效", "协议会改吗") is left to the Q&A (7.1): the whole
#: message must be the question, so 改了什么 followed by 时候生效 does not match.
_WHEN = r"(?:最近|近期|最新|这次|本次|上次|上一次|新版|新|刚刚|刚)"
_ASKS_WHAT_CHANGED = re.compile(
    rf"{_WHEN}?(?:本|这个|你们的?|微拓的?|服务|用户|使用)?(?:协议|条款)(?:内容)?{_WHEN}?(?:都|又|具体)?(?:"
    r"(?:修改|更新|更改|改动|变更|变动|调整|修订|改|变)(?:了|过)?(?:哪些|什么|啥|哪里|哪儿|哪)"
    r"(?:内容|地方|条款|东西|部分|条|方面)?"
    r"|有(?:什么|哪些|啥)(?:新的)?(?:变化|变动|更新|修改|改动|不同|调整|区别)"
    r"|(?:的)?(?:修改|更新|变更|改动|变化)(?:的)?(?:内容|摘要|地方)?(?:是|有)(?:什么|哪些|啥)"
    r")(?:吗|呢|啊|呀|啦|了)?"
    rf"|{_WHEN}(?:的)?(?:修改|更新|变更|改动)(?:的)?(?:内容|摘要|地方)?(?:是|有)(?:什么|哪些|啥)(?:吗|呢|啊|呀)?"
)

#: Chat's command for the same (its router takes them first); the app has no commands.
STATUS_WORDS = ("同意状态", "我的同意")


def is_asking(text: str) -> bool:
    """Whether ``text`` asks something, a question of its form (:func:`is_question`)
    or one of the questions answered here (协议最近改了什么, 条款有什么变化 carry no
    question mark): at a dialog's step it is answered, not refused as a value."""
    return is_question(text) or asked(text) is not None


def asked(text: str) -> str | None:
    """:data:`OWN_CONSENT`, :data:`DECLINING`, :data:`CHOICE`, :data:`CHANGES`, or None for any other question."""
    words = normalize_command(text).rstrip(TRAILING_PUNCTUATION).replace(" ", "")
    if words in STATUS_WORDS or _ASKS_OWN_CONSENT.fullmatch(words):
        return OWN_CONSENT
    if _ASKS_WHAT_DECLINING_DOES.fullmatch(words):
        return DECLINING
    if words in NEAR_CONSENT:
        return CHOICE
    if _CHANGING_MIND.fullmatch(words):
        return DECLINING
    if _ASKS_WHAT_CHANGED.fullmatch(words):
        return CHANGES
    return None


async def amendments(terms: "Terms") -> tuple[AgreementVersion, AgreementVersion | None, list[AgreementVersion]]:
    """The version in force, the one it replaced (None when it is the first
    published: nothing was ever amended before it) and the versions
    published to take effect later, the next first."""
    current, versions = await terms.current(), await terms.versions()
    earlier = [v for v in versions if v.effective_at < current.effective_at]
    return current, (earlier[-1] if earlier else None), await terms.pending()


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
    (their record), what declining does or what the amendments changed; None
    for any other question.
    Asked outside a dialog and at a dialog's step alike."""
    kind = asked(text)
    if kind == OWN_CONSENT:
        return await consent_status_text(chat)
    accepted = await chat.accepted_or_unknown() if kind == CHANGES else None  # what the versions to come ask of them
    return await published_answer(chat.services.terms, text, accepted)


async def published_answer(terms: "Terms", text: str, accepted: bool | None = None) -> str | None:
    """Chat's answer to ``text`` when the published versions answer it, whoever
    asks (what declining does, what the amendments changed); None otherwise.
    ``wetoop-bot ask`` shows these as chat words them (``accepted``: whether
    the asker accepted the version in force, None when not known)."""
    kind = asked(text)
    if kind == DECLINING:
        found = declining_sentence(await terms.current())
        return texts.what_declining_does(*(found or (None, None)))
    if kind == CHANGES:
        return texts.what_changed(*await amendments(terms), accepted)
    return None


async def consent_status_text(chat: "Chat") -> str:
    """Which version the user accepted, and when (or that they have not)."""
    state = await chat.consent()
    latest = state.latest
    answer = texts.consent_status(state.status, state.current, latest.version if latest else None,
                                  latest.at if latest else None)
    if state.accepted:  # what they will be asked about next
        answer = texts.with_upcoming(answer, await chat.services.terms.pending(), accepted=True)
    return answer
