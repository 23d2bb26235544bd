"""Split long text into pieces that fit one WeChat message."""

from __future__ import annotations

#: WeChat's limit for one text message, passive or customer-service, in UTF-8 bytes.
MAX_TEXT_BYTES = 2048

#: Where a line too long for one message is best cut: after a sentence, else
#: after a clause; a cut inside a word (…行为承担 / 责任。) reads as an error.
SENTENCE_ENDS = "。！？!?"
CLAUSE_ENDS = "，、；,;："
#: Closing marks that belong to the sentence before a cut (…。” stays together).
CLOSERS = "”’」』）)"


def split_text(text: str, limit: int = MAX_TEXT_BYTES, suffix: str = "") -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` UTF-8 bytes.

    Cuts fall between lines where possible; a line too long for one piece is
    cut after its last sentence end (。！？) that fits, else after its last
    comma, 、 or ；, else between characters. Nothing is dropped. Every piece
    but the last ends with ``suffix`` (which counts toward the limit), so the
    reader knows more follows.
    """
    if _size(text) <= limit:
        return [text]
    budget = limit - _size(suffix)
    if budget < 4:  # room for at least one character of any width
        raise ValueError("limit too small for the suffix")
    pieces: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while _size(current + line) > budget:
            if _size(line) <= budget:  # the line fits a piece of its own: cut before it
                pieces.append(current)
                current = ""
                break
            # A line too long for any piece: what of it fits after ``current``, cut at a
            # sentence end, else a comma, else a character (a notice's title line kept
            # with its body: alone, it was one more message to send).
            head, line = _cut(line, budget - _size(current))
            pieces.append(current + head)
            current = ""
        current += line
    if current:
        pieces.append(current)
    pieces = [p for p in pieces if p]
    return [p.rstrip("\n") + suffix for p in pieces[:-1]] + [pieces[-1]]


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut(text: str, budget: int) -> tuple[str, str]:
    """``text`` cut into a head of at most ``budget`` bytes and the rest, at the
    best place (see :func:`split_text`)."""
    fits = 0  # how many characters fit
    out = 0
    for char in text:
        out += len(char.encode("utf-8"))
        if out > budget:
            break
        fits += 1
    for ends in (SENTENCE_ENDS, CLAUSE_ENDS):
        cut = _after_last(text, fits, ends)
        if cut:
            return text[:cut], text[cut:]
    return text[:fits], text[fits:]


def _after_last(text: str, fits: int, ends: str) -> int:
    """Where to cut after the last of ``ends`` in ``text[:fits]`` (with the closing
    marks that follow it, when they fit too); 0 when there is none."""
    for index in range(fits - 1, -1, -1):
        if text[index] in ends:
            cut = index + 1
            while cut < fits and text[cut] in CLOSERS:
                cut += 1
            return cut
    return 0
