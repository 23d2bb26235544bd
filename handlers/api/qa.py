"""``/api/v1/qa?q=``: the agreement Q&A, as in chat."""

from __future__ import annotations

from bot import api_texts
from bot.app_answers import app_answer
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
        answer = await app_answer(self.services, question, self.user.openid if self.user else None)
        self.write_json(
            {
                "question": question,
                "kind": answer.kind,
                "text": answer.text,
                "refs": list(answer.refs),
                "references": [_reference(answer.version, ref) for ref in answer.refs],
                "version": answer.version.version,
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
