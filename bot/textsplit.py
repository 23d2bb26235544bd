"""Split long text into pieces that fit one WeChat message."""

from __future__ import annotations

#: WeChat's limit for one text message, passive or customer-service, in UTF-8 bytes.
MAX_TEXT_BYTES = 2048


def split_text(text: str, limit: int = MAX_TEXT_BYTES, suffix: str = "") -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` UTF-8 bytes.

    Cuts fall between lines where possible, else between characters; nothing
    is dropped. Every piece but the last ends with ``suffix`` (which counts
    toward the limit), so the reader knows more follows.
    """
    if _size(text) <= limit:
        return [text]
    budget = limit - _size(suffix)
    if budget < 4:  # room for at least one character of any width
        raise ValueError("limit too small for the suffix")
    pieces: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while _size(line) > budget:  # a single line too long: cut by characters
            head, line = _cut(line, budget - _size(current))
            current += head
            pieces.append(current)
            current = ""
        if _size(current + line) > budget:
            pieces.append(current)
            current = ""
        current += line
    if current:
        pieces.append(current)
    pieces = [p for p in pieces if p]
    return [p.rstrip("\n") + suffix for p in pieces[:-1]] + [pieces[-1]]


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut(text: str, budget: int) -> tuple[str, str]:
    out = 0
    for index, char in enumerate(text):
        out += len(char.encode("utf-8"))
        if out > budget:
            return text[:index], text[index:]
    return text, ""
