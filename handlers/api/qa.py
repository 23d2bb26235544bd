"""``/api/v1/qa?q=``: the agreement Q&A, as in chat."""

from __future__ import annotations

from bot import api_texts
from bot.validation import Invalid
from handlers.api.base import ApiHandler


class QAHandler(ApiHandler):
    """GET: the quoted clause and its references, or the abstention with the nearest sections."""

    async def get(self) -> None:
        question = self.get_query_argument("q", "").strip()
        if not question:
            raise Invalid(api_texts.QUESTION_MISSING, "q")
        answer = await self.services.answers.answer(question, self.user.openid, "miniprogram")
        version = await self.services.terms.current()
        self.write_json(
            {
                "question": question,
                "kind": answer.kind,
                "text": answer.app_text,
                "refs": list(answer.refs),
                "references": [_reference(version, ref) for ref in answer.refs],
                "version": version.version,
            }
        )


def _reference(version, ref: str) -> dict:
    """``"4.2"`` (a clause), ``"4"`` (a section) or ``"前言"`` with its section's title."""
    head, _, _ = ref.partition(".")
    section = version.section(int(head)) if head.isdigit() else None
    if section is None:
        return {"ref": ref, "kind": "preamble", "section": None, "section_title": None}
    return {"ref": ref, "kind": "clause" if "." in ref else "section", "section": section.number,
            "section_title": section.title}
