"""Places in the agreement as users name them: 4.1 (a clause, as the Q&A cites
them; 4,2 and 4、2 as phones type it), 第三节, 第4.2款, 前言. One reading for
chat's 条款 command, a place sent alone in chat, and ``/api/v1/qa``."""

from __future__ import annotations

import re

_NUMERALS = {c: i for i, c in enumerate("一二三四五六七八九十", start=1)}

#: A place named alone, as the Q&A cites them (a bare number is no place:
#: dialogs and menus take those).
BARE_PLACE = re.compile(r"第?\d+[.,、]\d+款?|第(?:\d+|[一二三四五六七八九十]+)[节款条]")
#: What may follow 条款 as a place in the agreement: 3, 4.1 (a clause, as the
#: Q&A quotes them; 4,2 and 4、2 as phones type it), 第三节, 第4.2款, 四; also -1
#: or 99999, to be told the range rather than answered by the Q&A. Anything else
#: (条款是什么意思) is a question.
PLACE = r"(-?\d+(?:[.,、]\d+)?|第?(?:\d+(?:[.,、]\d+)?|[一二三四五六七八九十]+)[节款条]?)"
#: Before the place, "条款：4" and "条款，4" (a phone keyboard's comma) as well as "条款 4";
#: after it, the full stop a keyboard adds.
OPEN, CLOSE = r"[:：,，、]?\s*", r"[。.!！]?"
#: The preamble's names.
PREAMBLE_WORDS = r"(?:前言|序言|引言)"
_NAMED = re.compile(r"(?:条款|协议)" + OPEN + PLACE + CLOSE)
_PREAMBLE = re.compile(rf"(?:(?:条款|协议){OPEN})?{PREAMBLE_WORDS}{CLOSE}")

#: What :func:`asked` returns for the preamble.
PREAMBLE = "前言"


def section_and_clause(place: str) -> tuple[int | None, int | None]:
    """``"4.1"`` -> (4, 1), ``"第三节"`` -> (3, None); (None, None) for what names no section."""
    text = re.sub(r"[,、]", ".", place.strip("第节款条"))
    if len(text) > 9:  # 条款 99999999999999999999: no agreement has that many (nor may int() take 5,000 digits)
        return None, None
    if re.fullmatch(r"\d+\.\d+", text):
        section, clause = text.split(".")
        return int(section), int(clause)
    if text.isdigit():
        return int(text), None
    if text and all(c in _NUMERALS for c in text):
        if len(text) == 1:
            return _NUMERALS[text], None
        if len(text) == 2 and text[0] == "十":  # 十一 ... 十九
            return 10 + _NUMERALS[text[1]], None
    return None, None


def asked(text: str) -> tuple[int | None, int | None] | str | None:
    """The place ``text`` names, when it is nothing but a place (7.1, 条款 4.1,
    第三节, 前言): ``(section, clause or None)``, :data:`PREAMBLE`, or None for
    a question. A section that does not exist is ``(None, None)``."""
    plain = text.strip()
    if _PREAMBLE.fullmatch(plain):
        return PREAMBLE
    named = _NAMED.fullmatch(plain)
    if named:
        return section_and_clause(named.group(1))
    if BARE_PLACE.fullmatch(plain.rstrip("。.!！")):
        return section_and_clause(plain.rstrip("。.!！"))
    return None
