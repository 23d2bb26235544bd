"""``/api/v1/qa?q=``: the agreement Q&A, as in chat."""

from __future__ import annotations

from bot import api_texts, own_questions, places
from bot.validation import Invalid
from handlers.api.base import ApiHandler
from storage.redis_store import RedisUnavailable


class QAHandler(ApiHandler):
    """GET: the quoted clause and its references, or the abstention with the
    nearest sections; a question about the user's own consent ("我同意了吗")
    or about declining ("不同意会怎样"), and one about what the amendments
    changed ("协议最近改了什么"), is answered as chat answers it.

    With Redis down no session can be checked; the agreement is public, so
    questions about it are still answered (as chat answers them then), only
    not one about the user's own record."""

    async def prepare(self) -> None:
        try:
            await super().prepare()
        except RedisUnavailable:
            self.user = None  # type: ignore[assignment]

    async def get(self) -> None:
        question = self.get_query_argument("q", "").strip()
        if not question:
            raise Invalid(api_texts.QUESTION_MISSING, "q")
        version = await self.services.terms.current()
        asked = own_questions.asked(question)
        place = places.asked(question)
        if place is not None:
            # 7.1 or 条款 4.1, as the answers cite clauses: read out, as chat does (the Q&A abstained).
            kind, refs, text = "place", *_place(version, place)
        elif asked == own_questions.OWN_CONSENT and self.user is None:
            kind, refs, text = asked, (), api_texts.STORAGE_UNAVAILABLE
        elif asked == own_questions.OWN_CONSENT:
            # Answered from the user's own record, as chat answers it.
            state = await self.services.consents.state(self.user.openid)
            latest = state.latest
            kind, refs = asked, ()
            text = api_texts.consent_status(state.status, state.current, latest.version if latest else None,
                                            latest.at if latest else None)
            if state.accepted:  # what they will be asked about next, as chat says
                text = api_texts.with_upcoming(text, await self.services.terms.pending())
        elif asked == own_questions.CHOICE:
            # "同意" typed here: the quote of 前言.3 (…即表示您已同意…) would let the user believe they had chosen.
            kind, refs, text = asked, (), api_texts.CONSENT_CHOICE_NOT_RECORDED
        elif asked == own_questions.CHANGES:
            # From the published versions, as chat answers it (the Q&A quoted 7.1, how amendments work).
            current, previous, upcoming = await own_questions.amendments(self.services.terms)
            kind, refs, text = asked, (), api_texts.what_changed(current, previous, upcoming)
        elif asked == own_questions.DECLINING:
            found = own_questions.declining_sentence(version)
            kind, refs = asked, (found[0],) if found else ()
            text = api_texts.what_declining_does(*(found or (None, None)))
        else:
            answer = await self.services.answers.answer(question, self.user.openid if self.user else None, "miniprogram")
            kind, text, refs = answer.kind, answer.app_text, answer.refs
        self.write_json(
            {
                "question": question,
                "kind": kind,
                "text": text,
                "refs": list(refs),
                "references": [_reference(version, ref) for ref in refs],
                "version": version.version,
            }
        )


def _place(version, place) -> tuple[tuple[str, ...], str]:
    """The refs and text of a place asked for (:func:`bot.places.asked`)."""
    if place == places.PREAMBLE:
        return ("前言",), api_texts.preamble_text(version)
    number, clause = place
    section = version.section(number) if number is not None else None
    text = api_texts.place_text(version, section, clause)
    if section is None or (clause is not None and not 1 <= clause <= len(section.clauses)):
        return (), text
    return (section.clause_number(clause - 1) if clause is not None else str(section.number),), text


def _reference(version, ref: str) -> dict:
    """``"4.2"`` (a clause), ``"4"`` (a section) or ``"前言"`` with its section's title."""
    head, _, _ = ref.partition(".")
    section = version.section(int(head)) if head.isdigit() else None
    if section is None:
        return {"ref": ref, "kind": "preamble", "section": None, "section_title": None}
    return {"ref": ref, "kind": "clause" if "." in ref else "section", "section": section.number,
            "section_title": section.title}
