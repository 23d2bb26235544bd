"""The agreement Q&A as a service: built for the version in force, rebuilt
when that version changes or admins change the Q&A data, every question logged.

Building takes about half a second (jieba and the index), so it runs in a
thread; answering is pure CPU (well under a millisecond) on the event loop.
Admins override the shipped data (``data/qa``) with files of the same names
in ``DATA_DIR/qa`` (see ``data/qa/README.md``); changes there are picked up
within a few seconds, without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Callable

from bot import texts, uncovered
from bot.qa import DEFAULT_DATA_DIR, QA, Answer
from bot.qa.engine import ABSTAIN, ANSWER, SMALLTALK
from bot.qa.data import QADataError
from bot.terms import Terms
from bot.validation import Invalid, hide_contacts
from storage.qa_log import QALog

log = logging.getLogger(__name__)

#: How often the override folder is checked for changes.
CHECK_SECONDS = 3.0
#: Longest question answered, in characters, in chat and in the app alike. A
#: real question is a sentence or two; a long paste costs the event loop about
#: 20 ms per 1,000 characters to match, and fills the question log.
MAX_QUESTION = 200

#: Built indexes by (version text, data, overrides): pure values, shared by the
#: runtimes of one process (tests build many) so each is built once. The latest
#: few only: each holds a tokenizer of its own, and a long-lived service builds
#: one at every version and every admin's edit of the Q&A files.
_BUILT: dict[tuple, QA] = {}
BUILT_KEPT = 4


#: The log's kind for a question the registration form's help answered, and the clauses that help cites.
FORM_HELP = "form_help"
FORM_HELP_REFS = ("2.1", "2.2", "3.1")


def respond(qa: QA, question: str, agreement_text: str) -> Answer:
    """``qa``'s answer, or what is said of a topic the agreement does not cover
    (:mod:`bot.uncovered`): for chat, the app and ``wetoop-bot ask`` alike."""
    result = qa.answer(question)
    topic = uncovered.reply(question, agreement_text)
    if topic is not None and result.kind != SMALLTALK:
        return Answer(ABSTAIN, topic, (), result.score, topic)
    return result


def with_hint(answer: Answer, hint: str | None) -> str:
    """The chat reply: the answer and the hint under it (导出, 通知设置 …), or the
    hint alone when no clause answers (我要改手机号: how to do it is the answer)."""
    if hint is None:
        return answer.text
    return hint if answer.kind == ABSTAIN else f"{answer.text}\n\n{hint}"


class Answers:
    """Answers questions about the agreement (see module docstring)."""

    def __init__(
        self,
        terms: Terms,
        qa_log: QALog,
        clock: Callable,
        override_dir: Path | None = None,
        cache_dir: Path | None = None,
        data_dir: Path = DEFAULT_DATA_DIR,
    ) -> None:
        self._terms = terms
        self._log = qa_log
        self._clock = clock
        self._data_dir = data_dir
        self._override_dir = override_dir
        self._cache_dir = cache_dir
        self._qa: QA | None = None
        self._signature: tuple = ()
        self._checked_at = 0.0
        self._building: asyncio.Task | None = None
        self._text_of: tuple[str, str] = ("", "")

    async def prepare(self) -> None:
        """Build the index for the version in force (at start-up)."""
        await self._ensure_current(wait=True)

    @property
    def ready(self) -> bool:
        """Whether an index is built: a question is answered without waiting."""
        return self._qa is not None

    async def answer(self, question: str, openid: str | None = None, channel: str = "official_account",
                     unanswered_too: bool = True) -> Answer:
        """The reply to a free-text question; the question and outcome are logged
        (not an unanswered one when ``unanswered_too`` is False: text that was
        perhaps no question, such as a name typed for a form not yet begun).
        Raises :class:`Invalid` (field ``q``) for one over :data:`MAX_QUESTION` characters."""
        if len(question.strip()) > MAX_QUESTION:
            raise Invalid(texts.question_too_long(MAX_QUESTION), "q")
        await self._ensure_current(wait=False)
        assert self._qa is not None
        result = respond(self._qa, question, self._agreement_text())
        if not question.strip() or not (unanswered_too or result.kind == ANSWER):
            return result  # nothing asked (a push without Content): no question for admins to review
        self._log.record(
            question=hide_contacts(question), kind=result.kind, refs=result.refs, score=result.score,
            version=self._qa.version.version, openid=openid, channel=channel, at=self._clock(),
        )
        return result

    def _agreement_text(self) -> str:
        """The text of the version the index answers from (read once per version)."""
        version = self._qa.version
        if self._text_of[0] != version.version:
            self._text_of = (version.version, version.canonical_text())
        return self._text_of[1]

    async def record_form_question(self, question: str, openid: str | None, channel: str) -> None:
        """Log a question about the registration form that the form's own help
        answered (:data:`bot.texts.REGISTRATION_FORM_HELP`, clauses 2.1, 2.2 and
        3.1): asked, so in the log, but not one the bot failed to answer."""
        current = await self._terms.current()
        self._log.record(question=hide_contacts(question), kind=FORM_HELP, refs=FORM_HELP_REFS, score=0.0, version=current.version,
                         openid=openid, channel=channel, at=self._clock())

    async def _ensure_current(self, wait: bool) -> None:
        """Build the index again when the version in force or the admins'
        overrides changed. Waits for it when ``wait``, when there is none yet,
        and when the version changed: the clause quoted must be the one now
        in force (a build takes well under a second). Changed overrides are
        picked up in the background meanwhile."""
        current = await self._terms.current()
        version_changed = self._qa is None or self._qa.version.version != current.version
        stale = version_changed
        now = time.monotonic()
        if not stale and now - self._checked_at > CHECK_SECONDS:
            self._checked_at = now
            stale = self._overrides() != self._signature
        if stale and (self._building is None or self._building.done()):
            self._building = asyncio.create_task(self._build(current))
        if not (wait or version_changed) or self._building is None:
            return
        if self._qa is None:
            await asyncio.shield(self._building)
            return
        try:
            await asyncio.shield(self._building)
        except Exception:  # noqa: BLE001 - the index in hand answers rather than none
            log.exception("Q&A index for agreement %s failed; answering from %s", current.version, self._qa.version.version)

    async def _build(self, version) -> None:
        signature = self._overrides()
        override = self._override_dir if self._override_dir and self._override_dir.is_dir() else None
        memo = (version.version, version.text_sha256, str(self._data_dir), str(override), signature)
        try:
            qa = _BUILT.pop(memo, None) or await asyncio.to_thread(
                QA.build, version, self._data_dir, override, self._cache_dir)
            _BUILT[memo] = qa  # the newest last
            while len(_BUILT) > BUILT_KEPT:
                del _BUILT[next(iter(_BUILT))]
        except QADataError as exc:
            if self._qa is None:  # without admins' overrides rather than not at all
                log.error("Q&A overrides unusable (%s); using the shipped data", exc)
                qa = await asyncio.to_thread(QA.build, version, self._data_dir, None, self._cache_dir)
            else:
                log.error("Q&A overrides unusable (%s); keeping the current index", exc)
                self._signature = signature
                return
        self._qa, self._signature = qa, signature
        log.info("Q&A index built for agreement %s", version.version)

    def _overrides(self) -> tuple:
        folder = self._override_dir
        if folder is None or not folder.is_dir():
            return ()
        return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir() if p.is_file()))
