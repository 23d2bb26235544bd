"""What the Q&A answers from: the agreement's numbered clauses, and their sentences.

Each preamble paragraph is a clause ``前言.N``; section N's clauses are ``N.M``, as in
``wetoop-bot terms diff``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

from bot.agreement import AgreementVersion
from bot.qa.data import DEFAULT_DATA_DIR, ClauseExamples, QADataError, fold, load_data

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


def attach_examples(units: list[Unit], clauses: tuple[ClauseExamples, ...], quiet: bool = False) -> list[list[str]]:
    """The example questions of each unit (same order as ``units``).

    Examples go to the clause of their number when its text contains their anchor (or
    they have none); else to the clause that contains the anchor; else they are dropped
    with a warning (a later version removed or reworded that clause; ``quiet``:
    asked about a version, not indexing it)."""
    by_ref = {u.ref: i for i, u in enumerate(units)}
    out: list[list[str]] = [[] for _ in units]
    for entry in clauses:
        index = by_ref.get(entry.ref)
        anchor = fold(entry.anchor) if entry.anchor else None
        if anchor is not None and (index is None or anchor not in fold(units[index].text)):
            index = next((i for i, u in enumerate(units) if anchor in fold(u.text)), None)
            if index is not None and not quiet:
                log.info("examples of clause %s follow their anchor to clause %s", entry.ref, units[index].ref)
        if index is None:
            if not quiet:
                log.warning("examples of clause %s dropped: no clause of this version matches", entry.ref)
            continue
        out[index].extend(entry.examples)
    return out


def unplaced_examples(clauses: tuple[ClauseExamples, ...], version: AgreementVersion) -> set[tuple[str, str]]:
    """``(clause number, example)`` of the examples that no clause of ``version`` takes."""
    placed = attach_examples(units_of(version), clauses, quiet=True)
    taken = {example for examples in placed for example in examples}
    return {(entry.ref, example) for entry in clauses for example in entry.examples if example not in taken}


def examples_lost(clauses: tuple[ClauseExamples, ...], old: AgreementVersion, new: AgreementVersion) -> dict[str, int]:
    """Clause number -> how many example questions ``old`` used that ``new``
    drops (its clause reworded without their anchor, or removed)."""
    counts: dict[str, int] = {}
    for ref, _example in sorted(unplaced_examples(clauses, new) - unplaced_examples(clauses, old)):
        counts[ref] = counts.get(ref, 0) + 1
    return counts


def examples_lost_warning(old: AgreementVersion, new: AgreementVersion, override_dir: Path | None) -> str:
    """What admins are told before publishing ``new`` after ``old`` if it
    drops example questions (the Q&A's files as the service reads them:
    shipped, with admins' overrides in ``override_dir``), else ""."""
    try:
        data = load_data(DEFAULT_DATA_DIR, override_dir if override_dir is not None and override_dir.is_dir() else None)
    except QADataError:
        return ""  # the console's Q&A page says what is wrong with the files
    counts = examples_lost(data.clauses, old, new)
    if not counts:
        return ""
    which = "、".join(f"条款 {ref} 的 {n} 个" for ref, n in counts.items())
    return (f"注意：发布后，问答将不再使用{which}示例问题（改写后的条款不再包含它们的锚点文字），"
            "用户就这些条款提问时可能得不到正确的回答。请在管理后台“问答”的 examples.toml（或 DATA_DIR/qa/examples.toml）"
            "中为它们更新 anchor。")
