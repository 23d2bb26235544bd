"""Merchant registration as a dialog, and the account commands around it.

The steps are data (:data:`REGISTRATION`); :mod:`bot.dialogs` walks them.
Validation comes from :mod:`bot.validation`, the account rules from
:mod:`bot.merchants`.
"""

from __future__ import annotations

import logging
import re

from bot import texts
from bot.chat_context import Chat
from bot.dialogs import Dialog, Step, Stop, dialog_context
from bot.gate import require_consent
from bot.merchants import STATUSES, AccountRefused, IncompleteProfile
from bot.own_questions import own_answer
from bot.replies import Reply
from bot.router import normalize_command
from bot.uncovered import PRICE
from bot.validation import (
    ENTITY_TYPES,
    NO_LICENCE,
    answer_word,
    parse_contact_name,
    parse_credit_code,
    parse_email,
    parse_entity_name,
    parse_entity_type,
    parse_phone,
    parse_adult,
)
from storage.mongo import MongoUnavailable

log = logging.getLogger(__name__)


#: Answers to the e-mail step that mean "none" (跳过, 我不要填邮箱, 没邮箱).
NO_EMAIL = re.compile(r"(跳过|略过|暂无|无|没有?|不要|不想|不用|不|先不)(填|写|留)?(了)?(邮箱|email|e-mail|电子邮箱)?(了|吧)?"
                      r"|(我)?(没有?|不要|不想|不用|不)(填|写|留)?(邮箱|email)(了|吧)?|无邮箱|没邮箱|不填了?")


def means_no_email(text: str) -> bool:
    """Whether ``text`` at the e-mail step means "none" (跳过, 我不要填邮箱)."""
    return NO_EMAIL.fullmatch(answer_word(text).removeprefix("我")) is not None


def _email(text: str, answers: dict) -> str:
    return "" if means_no_email(text) else parse_email(text)


#: Questions about the form's items and their answers, before the form's general help (first match).
_FORM_QUESTIONS = (
    (NO_LICENCE, texts.FORM_NO_LICENCE),
    (re.compile(r"个体"), texts.FORM_INDIVIDUAL_BUSINESS),
    (re.compile(r"信用代码|执照"), texts.FORM_CREDIT_CODE),
    (re.compile(PRICE.pattern + "|费用"), texts.NOT_IN_AGREEMENT_PRICE),  # 费用 too: at the form it is the form's
)


def _adult(value: bool) -> None:
    if not value:
        raise Stop(texts.UNDERAGE)


async def _confirm(chat: Chat, answers: dict) -> tuple[Reply, bool]:
    # Consent may have been withdrawn meanwhile: ask, then 确认 again by itself.
    prompt = await require_consent(chat, "确认")
    if prompt is not None:
        return prompt, False
    try:
        merchant, outcome = await chat.services.merchants.save_profile(
            chat.openid, answers, seen=dialog_context(chat).get("seen"),  # refused if changed elsewhere meanwhile
        )
    except AccountRefused as exc:
        if exc.code == "nothing_corrected":  # kept open at the summary, to 修改 what the reviewer asked
            return Reply(exc.message.replace("请修改相应项目", "请回复“修改”更改相应项目")), False
        return Reply(exc.message), True
    except IncompleteProfile as exc:  # the dialog asks every question first; kept open to answer them
        return Reply(exc.message), False
    return Reply(texts.registered(outcome, STATUSES[merchant.status])), True


async def _stored(chat: Chat, answers: dict) -> bool:
    try:
        merchant = await chat.services.merchants.get(chat.openid)
    except MongoUnavailable:
        return False  # not known: the usual reply to 取消
    return merchant is not None and merchant.status != "closed" and profile_answers(merchant) == answers


#: Words of a question about the form itself (为什么要手机号, 邮箱必须填吗): the
#: agreement's clause on registration answers it, not the nearest clause the
#: Q&A finds (手机号会被公开吗 quoted 4.2's licence to publish content).
_FORM_WORDS = ("手机", "电话", "号码", "邮箱", "信用代码", "营业执照", "执照", "联系人", "联系方式", "名称", "姓名",
               "名字", "年满", "成年", "年龄", "18岁", "十八岁", "填")


async def _answer(chat: Chat, question: str) -> str | None:
    """A question typed at a step: about the form, what the agreement asks of
    registrations; else the Q&A's quote, if it found a clause (None: the
    step's own message says what was wrong instead). Asked of the Q&A either
    way, so that it is in the question log admins review (the form's
    questions as answered, not among the unanswered ones)."""
    own = await own_answer(chat, question)  # 我同意了吗 from their record, as outside the dialog (it quoted 前言.3)
    if own is not None:
        return own
    answers = chat.services.answers
    asked = normalize_command(question)
    specific = next((reply for pattern, reply in _FORM_QUESTIONS if pattern.search(asked)), None)
    about_the_form = specific is not None or any(word in asked for word in _FORM_WORDS)
    try:
        if about_the_form:
            await answers.record_form_question(question, chat.openid, chat.message.channel)
            return specific or texts.REGISTRATION_FORM_HELP
        answer = await answers.answer(question, chat.openid, chat.message.channel)
    except Exception:  # noqa: BLE001 - the step's own message then, not a failed reply
        log.warning("answering %r inside registration failed", question, exc_info=True)
        return texts.REGISTRATION_FORM_HELP if about_the_form else None
    return answer.text if answer.kind == "answer" else None


REGISTRATION = Dialog(
    name="registration",
    title=texts.REGISTRATION_TITLE,
    on_confirm=_confirm,
    stored=_stored,
    answer=_answer,
    steps=(
        Step(
            "entity_type", "主体类型", lambda a: texts.PROMPT_ENTITY_TYPE,
            lambda text, a: parse_entity_type(text), show=lambda v: ENTITY_TYPES.get(v, "（未填写）"),
        ),
        Step(
            "entity_name", "名称", lambda a: texts.prompt_entity_name(a.get("entity_type", "")),
            lambda text, a: parse_entity_name(text, a.get("entity_type", "")), depends_on=("entity_type",),
        ),
        Step(
            "credit_code", "统一社会信用代码", lambda a: texts.PROMPT_CREDIT_CODE,
            lambda text, a: parse_credit_code(text), applies=lambda a: a.get("entity_type") == "enterprise",
        ),
        Step(
            "adult", "年龄确认", lambda a: texts.PROMPT_ADULT,
            lambda text, a: parse_adult(text), applies=lambda a: a.get("entity_type") == "individual",
            check=_adult, show=lambda v: texts.ADULT_CONFIRMED if v else "（未确认）", editable=False,
            takes=("确认",),
        ),
        Step(
            "contact_name", "联系人", lambda a: texts.PROMPT_CONTACT_NAME,
            # An individual's 同上 / 本人 is the name given at step 2.
            lambda text, a: parse_contact_name(
                text, a.get("entity_name") if a.get("entity_type") == "individual" else None),
        ),
        Step("phone", "手机号码", lambda a: texts.PROMPT_PHONE, lambda text, a: parse_phone(text)),
        Step(
            "email", "邮箱", lambda a: texts.PROMPT_EMAIL, _email,
            show=lambda v: v or "（未填写）",
        ),
    ),
)


def profile_answers(merchant) -> dict:
    """The dialog's answers for a saved record (to re-enter at the summary)."""
    answers = {k: v for k, v in merchant.profile().items() if v is not None}
    if merchant.entity_type == "individual":
        answers["adult"] = True
    answers.setdefault("email", "")
    return answers
