"""Differences between two agreement versions, clause by clause.

One place for the CLI (``wetoop-bot terms diff``, a unified diff) and the
admin console (a side-by-side table with the changed characters marked).
"""

from __future__ import annotations

import dataclasses
import difflib

from bot.agreement import AgreementVersion


def clause_lines(version: AgreementVersion) -> list[str]:
    """The version as numbered lines: title, the summary users are shown,
    preamble, section headings with their summaries, clauses (a change to a
    summary alone is a change users see too)."""
    lines = [f"标题 {version.title}"]
    lines += [f"要点.{i + 1} {line}" for i, line in enumerate(version.summary)]
    lines += [f"前言.{i + 1} {clause}" for i, clause in enumerate(version.preamble)]
    for section in version.sections:
        lines.append(f"第{section.number}节 {section.title}")
        lines.append(f"第{section.number}节摘要 {section.summary}")
        lines += [f"{section.clause_number(i)} {clause}" for i, clause in enumerate(section.clauses)]
    return lines


def unified(old: AgreementVersion, new: AgreementVersion) -> str:
    """A unified diff of the clause lines; empty when the texts are the same."""
    return "\n".join(difflib.unified_diff(clause_lines(old), clause_lines(new), old.version, new.version, lineterm=""))


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a side-by-side diff. ``tag`` is equal, replace, delete or insert;
    each side is a list of ``(text, changed)`` pieces (empty for no line)."""

    tag: str
    old: list[tuple[str, bool]]
    new: list[tuple[str, bool]]


def side_by_side(old: AgreementVersion, new: AgreementVersion, context: int | None = None) -> list[Row]:
    """Rows pairing old and new lines; in a changed pair the changed characters
    are marked. ``context`` keeps only that many equal rows around changes."""
    a, b = clause_lines(old), clause_lines(new)
    rows: list[Row] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows += [Row("equal", [(line, False)], [(line, False)]) for line in a[i1:i2]]
            continue
        left, right = a[i1:i2], b[j1:j2]
        for k in range(max(len(left), len(right))):
            l = left[k] if k < len(left) else None
            r = right[k] if k < len(right) else None
            if l is not None and r is not None:
                rows.append(Row("replace", *_marked(l, r)))
            elif l is not None:
                rows.append(Row("delete", [(l, True)], []))
            else:
                rows.append(Row("insert", [], [(r, True)]))
    if context is None:
        return rows
    keep = set()
    for index, row in enumerate(rows):
        if row.tag != "equal":
            keep.update(range(max(0, index - context), index + context + 1))
    return [row for index, row in enumerate(rows) if index in keep]


def _marked(left: str, right: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    old: list[tuple[str, bool]] = []
    new: list[tuple[str, bool]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, left, right, autojunk=False).get_opcodes():
        if left[i1:i2]:
            old.append((left[i1:i2], tag != "equal"))
        if right[j1:j2]:
            new.append((right[j1:j2], tag != "equal"))
    return old, new
