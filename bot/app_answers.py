"""The mini-program's answer to a question about the agreement (``/api/v1/qa``).

The same paths as chat, in the same order, worded for the app (no chat
commands): a place asked for (7.1, 条款 4.1) is read out; a question about the
asker's own consent is answered from their record, what declining does and
what the amendments changed from the published versions (:mod:`bot.own_questions`);
a consent choice typed as a question is said not to be recorded; anything else
goes to the Q&A.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from bot import api_texts, own_questions, places

if TYPE_CHECKING:
    from bot.agreement import AgreementVersion
    from bot.services import Services


@dataclasses.dataclass(frozen=True)
class AppAnswer:
    kind: str  # answer, abstain, smalltalk, place, or one of own_questions' kinds
    text: str
    refs: tuple[str, ...]
    version: "AgreementVersion"  # the version in force the answer is from


async def app_answer(services: "Services", question: str, openid: str | None) -> AppAnswer:
    """The answer to ``question`` asked by ``openid`` (None: no session could be
    checked, Redis being down; the agreement is public, so only a question
    about the asker's own record goes unanswered then)."""
    version = await services.terms.current()
    asked = own_questions.asked(question)
    place = places.asked(question)
    if place is not None:
        # 7.1 or 条款 4.1, as the answers cite clauses: read out, as chat does (the Q&A abstained).
        refs, text = _place(version, place)
        return AppAnswer("place", text, refs, version)
    if asked == own_questions.OWN_CONSENT:
        if openid is None:
            return AppAnswer(asked, api_texts.STORAGE_UNAVAILABLE, (), version)
        state = await services.consents.state(openid)
        latest = state.latest
        text = api_texts.consent_status(state.status, state.current, latest.version if latest else None,
                                        latest.at if latest else None)
        if state.accepted:  # what they will be asked about next, as chat says
            text = api_texts.with_upcoming(text, await services.terms.pending(), accepted=True)
        return AppAnswer(asked, text, (), version)
    if asked == own_questions.CHOICE:
        # "同意" typed here: the quote of 前言.3 (…即表示您已同意…) would let the user believe they had chosen.
        return AppAnswer(asked, api_texts.CONSENT_CHOICE_NOT_RECORDED, (), version)
    if asked == own_questions.CHANGES:
        # From the published versions, as chat answers it (the Q&A quoted 7.1, how amendments work).
        current, previous, upcoming = await own_questions.amendments(services.terms)
        accepted = (await services.consents.state(openid)).accepted if upcoming and openid is not None else None
        return AppAnswer(asked, api_texts.what_changed(current, previous, upcoming, accepted), (), version)
    if asked == own_questions.DECLINING:
        found = own_questions.declining_sentence(version)
        return AppAnswer(asked, api_texts.what_declining_does(*(found or (None, None))),
                         (found[0],) if found else (), version)
    answer = await services.answers.answer(question, openid, "miniprogram")
    return AppAnswer(answer.kind, answer.app_text, tuple(answer.refs), version)


def _place(version: "AgreementVersion", place) -> tuple[tuple[str, ...], str]:
    """The refs and text of a place asked for (:func:`bot.places.asked`)."""
    if place == places.PREAMBLE:
        return ("前言",), api_texts.preamble_text(version)
    number, clause = place
    section = version.section(number) if number is not None else None
    text = api_texts.place_text(version, section, clause)
    if section is None or (clause is not None and not 1 <= clause <= len(section.clauses)):
        return (), text
    return (section.clause_number(clause - 1) if clause is not None else str(section.number),), text
