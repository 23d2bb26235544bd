"""What the Q&A answers from: the agreement's numbered clauses, and their sentences.

Each preamble paragraph is a clause ``前言.N``; section N's clauses are ``N.M``, as in
``wetoop-bot terms diff``.
"""

from __future__ import annotations

import dataclasses
import logging
import re

from bot.agreement import AgreementVersion
from bot.qa.data import ClauseExamples, fold

log = logging.getLogger(__name__)

PREAMBLE = "前言"

#: A sentence ends after 。！？；!?; (a clause may end without one).
_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])")


@dataclasses.dataclass(frozen=True)
class Unit:
    ref: str  # "4.2", "前言.3"
    section: int  # 0 for the preamble
    section_title: str  # "" for the preamble
    section_summary: str
    text: str
    sentences: tuple[str, ...]

    @property
    def section_ref(self) -> str:
        return PREAMBLE if self.section == 0 else str(self.section)


def units_of(version: AgreementVersion) -> list[Unit]:
    units = [
        Unit(f"{PREAMBLE}.{i + 1}", 0, "", "", text, split_sentences(text)) for i, text in enumerate(version.preamble)
    ]
    for section in version.sections:
        for i, text in enumerate(section.clauses):
            units.append(
                Unit(section.clause_number(i), section.number, section.title, section.summary, text, split_sentences(text))
            )
    return units


def split_sentences(text: str) -> tuple[str, ...]:
    return tuple(s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s)


def attach_examples(units: list[Unit], clauses: tuple[ClauseExamples, ...]) -> list[list[str]]:
    """The example questions of each unit (same order as ``units``).

    Examples go to the clause of their number when its text contains their anchor (or
    they have none); else to the clause that contains the anchor; else they are dropped
    with a warning (a later version removed or reworded that clause)."""
    by_ref = {u.ref: i for i, u in enumerate(units)}
    out: list[list[str]] = [[] for _ in units]
    for entry in clauses:
        index = by_ref.get(entry.ref)
        anchor = fold(entry.anchor) if entry.anchor else None
        if anchor is not None and (index is None or anchor not in fold(units[index].text)):
            index = next((i for i, u in enumerate(units) if anchor in fold(u.text)), None)
            if index is not None:
                log.info("examples of clause %s follow their anchor to clause %s", entry.ref, units[index].ref)
        if index is None:
            log.warning("examples of clause %s dropped: no clause of this version matches", entry.ref)
            continue
        out[index].extend(entry.examples)
    return out
