"""``QA``: answers a user's question by quoting the agreement's matching clause.

Built once per agreement version (:meth:`QA.build`, well under a second with a warm
jieba cache); :meth:`QA.answer` is pure CPU with no I/O, safe to call on the event loop.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
from pathlib import Path

from bot import qa_texts
from bot.agreement import AgreementVersion
from bot.qa.analyzer import Analyzer
from bot.qa.data import DEFAULT_DATA_DIR, QAData, fold, load_data
from bot.qa.index import Index
from bot.qa.quote import quote
from bot.qa.units import PREAMBLE, Unit, attach_examples, units_of
from bot.validation import WECHAT_STICKER

log = logging.getLogger(__name__)

ANSWER, ABSTAIN, SMALLTALK = "answer", "abstain", "smalltalk"
#: Answers remembered per index (each at most 600 characters).
MEMO_SIZE = 4096


@dataclasses.dataclass(frozen=True)
class Answer:
    kind: str  # "answer" | "abstain" | "smalltalk"
    text: str  # the reply in chat, at most 600 characters
    refs: tuple[str, ...]  # clauses quoted ("4.2",); for abstain, the nearest sections ("4", "前言")
    score: float  # best score (0 for smalltalk)
    app_text: str  # the same for the mini-program: no chat commands in it


@dataclasses.dataclass(frozen=True)
class _Source:
    data_dir: Path
    override_dir: Path | None
    cache_dir: Path | None


class QA:
    def __init__(self, version: AgreementVersion, data: QAData, analyzer: Analyzer, source: _Source) -> None:
        self.version = version
        self.data = data
        self.settings = data.settings
        self.analyzer = analyzer
        self._source = source
        self._memo: collections.OrderedDict[str, Answer] = collections.OrderedDict()
        self.units: list[Unit] = units_of(version)
        examples = attach_examples(self.units, data.clauses)
        sections = {s.number: analyzer.terms(f"{s.title}\n{s.summary}") for s in version.sections}
        sentence_terms = [[analyzer.terms(s) for s in u.sentences] for u in self.units]
        self.index = Index(
            unit_terms=[analyzer.terms(u.text) for u in self.units],
            sentence_terms=sentence_terms,
            section_of=[u.section for u in self.units],
            section_terms=sections,
            example_terms=[[analyzer.terms(q) for q in qs] for qs in examples],
            reject_terms=[analyzer.terms(q) for q in data.out_of_scope],
            settings=data.settings,
        )
        # A question that is one of a clause's examples, word for word, is answered with
        # it: an admin who adds an unanswered question as an example expects that, though
        # answers otherwise never rest on the examples alone (min_own_coverage).
        self._examples: dict[str, int] = {}
        for unit, questions in enumerate(examples):
            for question in questions:
                self._examples.setdefault(_example_key(question), unit)
        self._sentence_terms = [[frozenset(terms) for terms in unit] for unit in sentence_terms]
        self._section_titles = {0: ""} | {s.number: s.title for s in version.sections}

    @classmethod
    def build(
        cls,
        version: AgreementVersion,
        data_dir: Path = DEFAULT_DATA_DIR,
        override_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> "QA":
        """Read the data files (``override_dir``'s merged in, see :mod:`bot.qa.data`),
        load jieba (its cache in ``cache_dir``, default the user's cache directory) and index
        ``version``'s clauses. Raises :class:`bot.qa.data.QADataError`."""
        data = load_data(Path(data_dir), Path(override_dir) if override_dir is not None else None)
        analyzer = Analyzer.load(data.lexicon, data.settings, cache_dir)
        return cls(version, data, analyzer, _Source(Path(data_dir), override_dir, cache_dir))

    def rebuild(self, version: AgreementVersion | None = None) -> "QA":
        """A new QA from the data files as they are now (after an admin changed the
        override directory), for this or another version."""
        return QA.build(version or self.version, self._source.data_dir, self._source.override_dir, self._source.cache_dir)

    # -- answering --------------------------------------------------------------------

    def answer(self, question: str) -> Answer:
        """The answer to ``question``. Answers are a pure function of the
        question and this index, and users ask the same things, so the
        latest :data:`MEMO_SIZE` are remembered (an LRU)."""
        memo = self._memo
        found = memo.get(question)
        if found is not None:
            memo.move_to_end(question)
            return found
        result = self._answer(question)
        memo[question] = result
        if len(memo) > MEMO_SIZE:
            memo.popitem(last=False)
        return result

    def _answer(self, question: str) -> Answer:
        # WeChat's stickers arrive as their names ([微笑]): no words of a question.
        question = WECHAT_STICKER.sub(" ", question)
        group = self.analyzer.smalltalk_group(question)
        if group is not None:
            return Answer(SMALLTALK, qa_texts.SMALLTALK[group], (), 0.0, qa_texts.APP_SMALLTALK[group])
        groups = self.analyzer.groups(question)
        # Nothing but stop words, or only words like 协议 (帮我看看协议): ask for a question.
        if all(set(terms) <= self.analyzer.vague for terms, _ in groups):
            title = self.version.title
            return Answer(ABSTAIN, qa_texts.vague(title), (), 0.0, qa_texts.vague(title, chat=False))
        scores, best, confident = self.judge(groups)
        exact = self._examples.get(_example_key(question))
        if exact is not None:
            best, confident = exact, True
        if not confident:
            return self._abstain(scores, scores[best])
        unit = self.units[best]
        name = qa_texts.clause_name(self.version.title, unit.section, unit.section_title, unit.ref)
        quoted = quote(
            unit.text, unit.sentences, self._sentence_terms[best], {t for terms, _ in groups for t in terms},
            self.index.term_weight, self.settings.max_quote_chars, self.settings.whole_clause_chars,
        )
        return Answer(ANSWER, _fit(qa_texts.answer(name, quoted, unit.section)), (unit.ref,), scores[best],
                      _fit(qa_texts.answer(name, quoted, unit.section, chat=False)))

    def judge(self, groups, exclude_doc: int | None = None) -> tuple[list[float], int, bool]:
        """Every clause's score, the best clause, and whether to answer with it.
        ``exclude_doc`` leaves one example out (:func:`bot.qa.evaluate.leave_one_out`)."""
        scores = self.index.scores(groups, exclude_doc)
        scores.pop()  # the reject unit's
        best = max(range(len(scores)), key=scores.__getitem__)
        return scores, best, self._confident(groups, best, scores[best], exclude_doc)

    def _confident(self, groups, best: int, score: float, exclude_doc: int | None = None) -> bool:
        """Whether the best clause answers the question well enough to be quoted."""
        settings = self.settings
        if score < settings.min_score:
            return False
        coverage = self.index.coverage(groups, best, exclude_doc)
        needed = settings.min_coverage if coverage.words > 1 else settings.min_single_coverage
        if coverage.share < needed or coverage.own < settings.min_own_coverage:
            return False
        reject = self.index.coverage(groups, self.index.reject, exclude_doc)
        return reject.share < coverage.share + settings.reject_margin

    def rank(self, question: str, k: int = 3, exclude_doc: int | None = None) -> list[tuple[str, float]]:
        """The ``k`` best clauses and their scores, whatever the threshold says."""
        scores = self.index.scores(self.analyzer.groups(question), exclude_doc)[:-1]
        order = sorted(range(len(scores)), key=lambda u: (-scores[u], u))
        return [(self.units[u].ref, scores[u]) for u in order[:k]]

    def _abstain(self, scores: list[float], score: float) -> Answer:
        by_section: dict[int, float] = {}
        for unit, value in zip(self.units, scores):
            if value > 0:
                by_section[unit.section] = max(by_section.get(unit.section, 0.0), value)
        nearest = sorted(by_section, key=lambda s: (-by_section[s], s))[: self.settings.nearest_sections]
        titled = [(s, self._section_titles[s]) for s in nearest]
        text = qa_texts.abstain(self.version.title, titled)
        refs = tuple(PREAMBLE if s == 0 else str(s) for s in nearest)
        return Answer(ABSTAIN, _fit(text), refs, score, _fit(qa_texts.abstain(self.version.title, titled, chat=False)))


def _example_key(text: str) -> str:
    """A question as compared with the examples: folded, without spaces or punctuation."""
    return re.sub(r"[\W_]+", "", fold(text))


def _fit(text: str) -> str:
    if len(text) <= qa_texts.MAX_REPLY:
        return text
    log.warning("Q&A reply cut to %d characters", qa_texts.MAX_REPLY)
    return text[: qa_texts.MAX_REPLY - 1] + "…"
