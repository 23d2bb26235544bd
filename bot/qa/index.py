"""The ranking: BM25 over each clause's text, its section and its example questions.

Every clause (unit) has documents of three kinds: its own text, its section's title and
summary (shared by the section's clauses) and each of its example questions. The
out-of-scope examples form one more unit, the *reject* unit, that is never answered
from.

A term's IDF is counted over units (in how many units' documents it occurs), so many
examples of one clause do not make its words look common. A term the index has never
seen weighs ``unknown_weight`` times the largest IDF.

The question comes as groups of terms, one group per word (a synonym's replacements, or
a long word and the words inside it; see :meth:`bot.qa.analyzer.Analyzer.groups`). A
group's weight, and its match in a document, is its best term's plus ``group_rest``
times the others', so a word that expands to three terms still counts about once.

Two figures per unit:

- the *score*, to rank: ``weight_text · bm25(text) + weight_examples · max
  bm25(example) + weight_section · bm25(section)``, divided by the question's weight;
- the *coverage*, to decide whether to answer at all: the share of the question's
  weight found in one view of the unit, its own words (text and section) or one of its
  examples, whichever holds more. "手机充电很慢" shares 手机 with the clause on mobile
  devices, but that is less than half of the question.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

from bot.qa.analyzer import Group
from bot.qa.data import Settings

TEXT, SENTENCE, SECTION, EXAMPLE = "text", "sentence", "section", "example"


@dataclasses.dataclass(frozen=True)
class Coverage:
    """The share of the question's weight that one view of a unit holds, its own words
    (text and section) or one of its examples, whichever holds more (``share``); the
    share its own words hold (``own``); how many of the question's words the best view
    holds (``words``)."""

    share: float
    own: float
    words: int


class Index:
    def __init__(
        self,
        unit_terms: list[list[str]],
        sentence_terms: list[list[list[str]]],
        section_of: list[int],
        section_terms: dict[int, list[str]],
        example_terms: list[list[list[str]]],
        reject_terms: list[list[str]],
        settings: Settings,
    ) -> None:
        """``example_terms[u]``: the examples of unit ``u``; ``reject_terms``: the
        out-of-scope examples (unit number :attr:`reject`)."""
        self.settings = settings
        self.size = len(unit_terms)
        self.reject = self.size
        # Documents: (kind, owner, term counts); owner is a unit, or a section for SECTION.
        docs: list[tuple[str, int, Counter]] = []
        for unit, terms in enumerate(unit_terms):
            docs.append((TEXT, unit, Counter(terms)))
        for unit, sentences in enumerate(sentence_terms):
            for terms in sentences:
                docs.append((SENTENCE, unit, Counter(terms)))
        for section, terms in section_terms.items():
            docs.append((SECTION, section, Counter(terms)))
        for unit, examples in enumerate([*example_terms, reject_terms]):
            for terms in examples:
                docs.append((EXAMPLE, unit, Counter(terms)))
        self._docs = [(kind, owner) for kind, owner, _ in docs]

        # The views for coverage: a unit's own words (text and section), each example.
        self._own_words = [
            frozenset(terms) | frozenset(section_terms.get(section_of[u], ())) for u, terms in enumerate(unit_terms)
        ]
        self._example_words: list[list[tuple[int, frozenset[str]]]] = [[] for _ in range(self.size + 1)]
        for doc, (kind, owner, counts) in enumerate(docs):
            if kind == EXAMPLE:
                self._example_words[owner].append((doc, frozenset(counts)))

        # Which units each term occurs in (any kind of document).
        units_with: dict[str, set[int]] = {}
        for kind, owner, counts in docs:
            owners = [u for u in range(self.size) if section_of[u] == owner] if kind == SECTION else [owner]
            for term in counts:
                units_with.setdefault(term, set()).update(owners)
        n = self.size + 1
        agreement_words = frozenset().union(*self._own_words)
        example_only = settings.example_only_weight
        self.idf = {
            t: math.log(1 + (n - len(us) + 0.5) / (len(us) + 0.5)) * (1.0 if t in agreement_words else example_only)
            for t, us in units_with.items()
        }
        self.idf_max = math.log(1 + (n + 0.5) / 0.5)

        # BM25 postings: term → [(doc, idf · saturated tf)], length-normalised per kind of
        # document (one occurrence in a document of average length is worth the term's IDF).
        k1, b = settings.k1, settings.b
        lengths: dict[str, list[int]] = {}
        for kind, _, counts in docs:
            lengths.setdefault(kind, []).append(sum(counts.values()))
        avgdl = {kind: (sum(ls) / len(ls)) or 1.0 for kind, ls in lengths.items()}
        self._postings: dict[str, list[tuple[int, float]]] = {}
        for doc, (kind, _, counts) in enumerate(docs):
            norm = k1 * (1 - b + b * sum(counts.values()) / avgdl[kind])
            for term, tf in counts.items():
                self._postings.setdefault(term, []).append((doc, self.idf[term] * tf * (1 + k1) / (tf + norm)))
        self._section_of = section_of
        self._weights = {
            TEXT: settings.weight_text, SENTENCE: settings.weight_sentence,
            SECTION: settings.weight_section, EXAMPLE: settings.weight_examples,
        }

    def term_weight(self, term: str) -> float:
        idf = self.idf.get(term)
        return idf if idf is not None else self.idf_max * self.settings.unknown_weight

    def _group_weight(self, values: list[float], factor: float) -> float:
        best = max(values)
        return factor * (best + self.settings.group_rest * (sum(values) - best))

    def weight(self, groups: list[Group]) -> float:
        """The question's weight: what a unit holding all of it would match."""
        return sum(self._group_weight([self.term_weight(t) for t in terms], f) for terms, f in groups)

    def scores(self, groups: list[Group], exclude_doc: int | None = None) -> list[float]:
        """Each unit's normalised score (0 when nothing matches); the last is the reject unit's."""
        total = self.weight(groups)
        size = self.size + 1
        if not total:
            return [0.0] * size
        per_doc: dict[int, float] = {}
        for terms, factor in groups:
            if len(terms) == 1:
                for doc, value in self._postings.get(terms[0], ()):
                    per_doc[doc] = per_doc.get(doc, 0.0) + factor * value
                continue
            matches: dict[int, list[float]] = {}
            for term in terms:
                for doc, value in self._postings.get(term, ()):
                    matches.setdefault(doc, []).append(value)
            for doc, values in matches.items():
                per_doc[doc] = per_doc.get(doc, 0.0) + self._group_weight(values, factor)
        text = [0.0] * size
        best_sentence = [0.0] * size
        best_example = [0.0] * size
        section: dict[int, float] = {}
        docs = self._docs
        for doc, value in per_doc.items():
            if doc == exclude_doc:
                continue
            kind, owner = docs[doc]
            if kind == TEXT:
                text[owner] = value
            elif kind == SENTENCE:
                if value > best_sentence[owner]:
                    best_sentence[owner] = value
            elif kind == EXAMPLE:
                if value > best_example[owner]:
                    best_example[owner] = value
            else:
                section[owner] = value
        w = self._weights
        section_of = self._section_of
        out = [
            (
                w[TEXT] * text[u] + w[SENTENCE] * best_sentence[u] + w[EXAMPLE] * best_example[u]
                + w[SECTION] * section.get(section_of[u], 0.0)
            ) / total
            for u in range(self.size)
        ]
        out.append(w[EXAMPLE] * best_example[self.reject] / total)
        return out

    def coverage(self, groups: list[Group], unit: int, exclude_doc: int | None = None) -> "Coverage":
        """How much of the question ``unit`` holds (see :class:`Coverage`)."""
        total = self.weight(groups)
        if not total:
            return Coverage(0.0, 0.0, 0)
        weighted = [([(self.term_weight(t), t) for t in terms], f) for terms, f in groups]

        def held(words: frozenset[str]) -> tuple[float, int]:
            value, count = 0.0, 0
            for pairs, factor in weighted:
                matched = [w for w, t in pairs if t in words]
                if matched:
                    value += self._group_weight(matched, factor)
                    count += 1
            return value, count

        own = held(self._own_words[unit]) if unit < self.size else (0.0, 0)
        # Only the examples sharing a term with the question can hold any of it.
        terms = {t for group, _ in groups for t in group}
        sharing = {doc for t in terms for doc, _ in self._postings.get(t, ())}
        examples = (held(words) for doc, words in self._example_words[unit] if doc in sharing and doc != exclude_doc)
        best = max([own, *examples])
        return Coverage(best[0] / total, own[0] / total, best[1])

    def example_docs(self) -> list[tuple[int, int]]:
        """(document id, unit) of every example (the reject unit's too), for leave-one-out."""
        return [(doc, owner) for doc, (kind, owner) in enumerate(self._docs) if kind == EXAMPLE]
