"""``/api/v1/terms…``: the agreement, public (users read it before consenting)."""

from __future__ import annotations

from bot import api_texts
from bot.terms import VersionNotFound
from handlers.api import render
from handlers.api.base import ApiHandler


class TermsHandler(ApiHandler):
    """GET: the version in force and the upcoming ones, with summaries; every version's dates."""

    public = True

    async def get(self) -> None:
        terms = self.services.terms
        current, pending = await terms.current(), await terms.pending()
        self.write_json(
            {
                "current": render.version_brief(current),
                "upcoming": render.version_brief(pending[0]) if pending else None,
                # Every scheduled one, the next first (chat lists them all too).
                "upcoming_all": [render.version_brief(v) for v in pending],
                "versions": [
                    {"version": v.version, "effective_at": render.iso(v.effective_at)} for v in await terms.versions()
                ],
            }
        )


class VersionHandler(ApiHandler):
    """GET: one version in full (preamble, sections, clauses); a withdrawn one
    too, with ``withdrawn`` saying when and why (``null`` for others)."""

    public = True

    async def get(self, version: str) -> None:
        found, withdrawal = await self.services.terms.readable(version)
        self.write_json({**render.version_full(found), "withdrawn": render.withdrawal(withdrawal)})


class SectionHandler(ApiHandler):
    """GET: one section of one version, clause by clause."""

    public = True

    async def get(self, version_id: str, number: str) -> None:
        version = await self.services.terms.get(version_id)
        section = version.section(int(number))
        if section is None:
            raise VersionNotFound(
                api_texts.SECTION_NOT_FOUND.format(version=version.version, number=int(number), count=len(version.sections)),
                code="section_not_found",
            )
        self.write_json({"version": version.version, "section": render.section_full(section)})
