"""Which words of a clause to quote.

The whole clause when it is short (at most ``whole_clause_chars``, or two sentences
within ``max_quote_chars``); else the sentence that shares the most (IDF-weighted)
terms with the question, and a second one when it adds words of the question and both
fit, in their order, with "……" where text is left out. Quotes are verbatim pieces of
the clause (a sentence longer than the limit is cut after a comma).
"""

from __future__ import annotations

import re
from typing import Callable

from bot.qa_texts import ELLIPSIS

_PAUSE = re.compile(r"(?<=[,，、])")
#: How a sentence that qualifies the one before it begins.
_QUALIFYING = ("但是", "但", "然而", "不过", "除非")


def quote(
    text: str,
    sentences: tuple[str, ...],
    sentence_terms: list[frozenset[str]],
    question: set[str],
    weight: Callable[[str], float],
    max_chars: int,
    whole_chars: int,
) -> str:
    """The words of the clause to quote for a question made of the terms ``question``."""
    if len(text) <= whole_chars or (len(sentences) <= 2 and len(text) <= max_chars):
        return _without_lead_in(text)
    found = [terms & question for terms in sentence_terms]
    scores = [sum(weight(t) for t in terms) for terms in found]
    best = max(range(len(sentences)), key=lambda i: (scores[i], -i))
    chosen = [best]
    # The sentence after it when it qualifies it (但是, 对新功能……的修改将立即生效):
    # quoted alone, "修改会在公布一周后方始生效" read as true of every change.
    qualifier = best + 1 < len(sentences) and sentences[best + 1].lstrip().startswith(_QUALIFYING)
    if qualifier and len(sentences[best]) + len(sentences[best + 1]) <= max_chars:
        others = [best + 1]
    else:
        # A second sentence when it holds words of the question the best one lacks, and fits.
        others = sorted(
            (i for i in range(len(sentences)) if i != best and found[i] - found[best]),
            key=lambda i: (-sum(weight(t) for t in found[i] - found[best]), i),
        )
    for i in others:
        if len(sentences[best]) + len(sentences[i]) <= max_chars:
            chosen.append(i)
            break
    chosen.sort()
    parts = []
    for n, i in enumerate(chosen):
        if (n == 0 and i > 0) or (n > 0 and i != chosen[n - 1] + 1):
            parts.append(ELLIPSIS)
        parts.append(_shorten(sentences[i], max_chars))
    if chosen[-1] < len(sentences) - 1 and not parts[-1].endswith(ELLIPSIS):
        parts.append(ELLIPSIS)
    return _without_lead_in("".join(parts))


def _shorten(sentence: str, max_chars: int) -> str:
    """A sentence longer than the limit keeps its first pauses (commas) that fit."""
    if len(sentence) <= max_chars:
        return sentence
    out = ""
    for piece in _PAUSE.split(sentence):
        if len(out) + len(piece) > max_chars - len(ELLIPSIS):
            break
        out += piece
    return (out or sentence[: max_chars - len(ELLIPSIS)]) + ELLIPSIS


def _without_lead_in(text: str) -> str:
    """A clause that introduces the next ones ("…，您应当:") is quoted without the lead-in."""
    stripped = text.rstrip()
    if stripped.endswith((":", "：")):
        cut = max(stripped.rfind(","), stripped.rfind("，"))
        if cut > 0:
            return stripped[:cut] + ELLIPSIS
    return text
