"""A generic engine for step-by-step chat dialogs (aiogram's FSM, as data).

A :class:`Dialog` is a tuple of :class:`Step` values, each with its prompt,
its parser (which raises :class:`~bot.validation.Invalid` with a specific
message) and the condition under which it applies. The engine walks it:

* at any step ``取消`` ends the dialog and ``上一步`` goes back one step;
* a wrong answer gets the parser's message and the same step again;
* after the last step a summary: ``确认`` completes (the dialog's
  ``on_confirm``), ``修改`` lets the user pick a field to change, ``取消`` ends;
* the state (dialog, step, answers, history) lives in Redis with an idle
  expiry; a draft is kept longer, so a user who comes back after the state
  expired is offered to resume.

The state name is ``"<dialog>:<step>"``; the router sends every message of a
user in that state to :meth:`DialogEngine.handle`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Awaitable, Callable

from bot import texts
from bot.chat_context import Chat
from bot.replies import Reply
from bot.router import normalize_command
from bot.own_questions import is_asking
from bot.validation import TRAILING_PUNCTUATION, Invalid
from storage.dialog_state import DialogState

CANCEL = "取消"
BACK = "上一步"
CONFIRM = "确认"
EDIT = "修改"
RESUME = "继续"
RESTART = "重新开始"

#: The words every dialog takes at any step.
DIALOG_WORDS = frozenset((CANCEL, BACK, CONFIRM, EDIT, RESUME, RESTART))

SUMMARY = "summary"
CHOOSE = "choose"
RESUME_STEP = "resume"


#: What people type for the dialog's own words: "取消注册" ends the dialog, it is no name.
SYNONYMS = {
    **dict.fromkeys(("取消注册", "退出注册", "不注册了", "取消修改", "不改了", "取消注销", "不注销了",
                     "退出", "算了", "算了吧", "放弃", "不填了", "不弄了", "我不想注册了", "不想注册了", "我不注册了",
                     "我不想注册", "不想注册", "我不想改了", "不想改了", "我不想注销了", "不想注销了"), CANCEL),
    **dict.fromkeys(("返回", "返回上一步", "上一个", "后退"), BACK),
    **dict.fromkeys(("重新填写", "重填", "重来"), RESTART),
    # At a summary people confirm in words of their own ("好的" stays a reply, no confirmation).
    **dict.fromkeys(("确定", "提交", "确认提交", "确定提交", "确认无误", "没问题", "无误"), CONFIRM),
}


def bare_word(text: str) -> str:
    """``text`` folded as a command, without the punctuation around it."""
    return normalize_command(text).strip(TRAILING_PUNCTUATION)


def control_word(text: str) -> str:
    """:func:`bare_word` with synonyms made the word itself: inside a dialog
    "取消。" and "算了" are 取消 (outside, "同意？" must stay a question)."""
    word = bare_word(text)
    return SYNONYMS.get(word, word)


def amending(chat: Chat) -> bool:
    """Whether the open dialog changes saved data (修改资料) rather than creates it."""
    return bool(chat.dialog and chat.dialog.data.get("amending"))


def dialog_context(chat: Chat) -> dict:
    """The ``context`` the user's open dialog was started with ({} if none)."""
    return dict((chat.dialog.data.get("context") or {}) if chat.dialog is not None else {})


class Stop(Exception):
    """Raised by a step's ``check`` to end the dialog with ``message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclasses.dataclass(frozen=True)
class Step:
    """One question of a dialog.

    ``parse(text, answers)`` returns the value stored under ``name``;
    ``applies(answers)`` says whether the step is asked at all; ``check(value)``
    may raise :class:`Stop` to end the dialog (e.g. an applicant under 18);
    ``show(value)`` renders the value in the summary; ``depends_on`` names
    steps whose change makes this one's answer void, so it is asked again
    (a name given as a company is not a person's name); ``takes`` the control
    words it accepts as an answer (any other is refused, never stored).
    """

    name: str
    label: str
    prompt: Callable[[dict], str]
    parse: Callable[[str, dict], Any]
    applies: Callable[[dict], bool] = lambda answers: True
    check: Callable[[Any], None] = lambda value: None
    show: Callable[[Any], str] = lambda value: "（未填写）" if value in (None, "") else str(value)
    editable: bool = True
    depends_on: tuple[str, ...] = ()
    #: Control words this step takes as an answer (确认 to "请确认您已年满 18 周岁").
    takes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Dialog:
    """A whole dialog: its steps, its summary and what confirming does."""

    name: str
    steps: tuple[Step, ...]
    title: str
    #: Called with the cleaned answers on 确认; returns the reply and whether
    #: the dialog is done (``False`` keeps it open, e.g. to ask for consent first).
    on_confirm: Callable[[Chat, dict], Awaitable[tuple[Reply, bool]]]
    #: Whether these answers are stored already: a 确认 whose reply said it
    #: might not have been saved (the database froze) may have been. 取消 at
    #: the summary then says so instead of "nothing was saved".
    stored: Callable[[Chat, dict], Awaitable[bool]] | None = None
    #: Answers a question typed at a step instead of its answer (the agreement's
    #: Q&A); the step is asked again after it, nothing typed so far is lost.
    answer: Callable[[Chat, str], Awaitable[str | None]] | None = None

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def applicable(self, answers: dict) -> list[Step]:
        return [s for s in self.steps if s.applies(answers)]

    def missing(self, answers: dict) -> Step | None:
        """The first step that applies and has no answer (``None``: all answered)."""
        return next((s for s in self.applicable(answers) if s.name not in answers), None)

    def clean(self, answers: dict) -> dict:
        """Only the answers of steps that apply (a changed entity type drops the other's fields)."""
        keep = {s.name for s in self.applicable(answers)}
        return {k: v for k, v in answers.items() if k in keep}


class DialogEngine:
    """Walks any :class:`Dialog` for one user at a time (see module docstring)."""

    async def start(self, chat: Chat, dialog: Dialog, answers: dict | None = None, at_summary: bool = False,
                    context: dict | None = None) -> Reply:
        """Begin ``dialog`` (offering to resume a saved draft), or open it at the
        summary with ``answers`` (to change saved data). ``context`` travels with
        the dialog (and its draft) for ``on_confirm`` to read as
        :func:`dialog_context` (what the answers were based on)."""
        chat.dialog = None  # a new dialog: nothing carried over from an earlier one
        dialogs = chat.services.dialogs
        if answers is None:
            draft = await dialogs.load_draft(chat.openid, dialog.name)
            if draft and draft.get("answers"):
                draft.setdefault("context", context or {})  # what the draft's answers were based on
                draft["restart_context"] = context or {}  # 重新开始 begins from now, not from the draft
                await self._save(chat, dialog, RESUME_STEP, draft["answers"], [], draft, context=draft["context"])
                return Reply(texts.dialog_resume_offer(dialog.title, self._summary_lines(dialog, draft["answers"])))
            answers = {}
        if at_summary:
            draft = await dialogs.load_draft(chat.openid, dialog.name)
            if (draft and draft.get("answers") and draft.get("answers") != answers
                    and (draft.get("context") or {}) == (context or {})):
                # Changes typed into this same record and left (the dialog expired): offered
                # back, as a registration's draft is; 重新开始 starts from the record again.
                draft["restart_answers"] = answers
                await self._save(chat, dialog, RESUME_STEP, draft["answers"], [], draft, amending=True,
                                 context=context or {})
                return Reply(texts.dialog_resume_offer(
                    texts.amend_title(dialog.title), self._summary_lines(dialog, draft["answers"]), amending=True))
            await self._save(chat, dialog, SUMMARY, answers, [], amending=True, context=context or {})
            return Reply(self._prompt(dialog, SUMMARY, answers, amending=True))
        chat.dialog = DialogState(name="", data={"context": context or {}})  # for _goto's save to carry
        return await self._goto(chat, dialog, self._next(dialog, answers, None), answers, [])

    async def handle(self, chat: Chat, dialog: Dialog) -> Reply:
        """One message of a user in ``dialog``."""
        state = chat.dialog
        assert state is not None
        step_name = state.name.split(":", 1)[1]
        answers: dict = dict(state.data.get("answers") or {})
        history: list[str] = list(state.data.get("history") or [])
        word = control_word(chat.message.text)

        if word == CANCEL:
            stored = (step_name == SUMMARY and not state.data.get("amending") and dialog.stored is not None
                      and await dialog.stored(chat, dialog.clean(answers)))
            await self._end(chat, dialog)
            if stored:
                return Reply(texts.dialog_already_stored(dialog.title))
            if state.data.get("amending"):  # changing saved data: nothing was lost
                return Reply(texts.dialog_amend_cancelled(dialog.title))
            return Reply(texts.dialog_cancelled(dialog.title))
        if step_name == RESUME_STEP:
            if word == RESUME:
                draft = state.data.get("draft") or {}
                return await self._goto(chat, dialog, draft.get("step") or SUMMARY, answers, draft.get("history") or [])
            if word == RESTART:
                await chat.services.dialogs.clear_draft(chat.openid, dialog.name)
                draft = state.data.get("draft") or {}
                if state.data.get("amending"):  # from the record as it is
                    record = draft.get("restart_answers") or {}
                    await self._save(chat, dialog, SUMMARY, record, [], amending=True, context=dialog_context(chat))
                    return Reply(self._prompt(dialog, SUMMARY, record, amending=True))
                fresh = draft.get("restart_context") or {}
                return await self._goto(chat, dialog, self._next(dialog, {}, None), {}, [], context=fresh)
            return await self._answered(chat, dialog, texts.dialog_resume_choice())
        if word == RESTART and not state.data.get("amending"):  # changing saved data: 取消 leaves it as it was
            return Reply(texts.DIALOG_RESTARTED + "\n\n" + (await self._goto(
                chat, dialog, self._next(dialog, {}, None), {}, [], context=dialog_context(chat))).text)
        if word == BACK:
            if not history:
                return Reply(texts.dialog_first_step() + "\n\n" + self._prompt(dialog, step_name, answers))
            # Skip steps a changed answer made void (企业's credit code for 个人).
            live = {s.name for s in dialog.applicable(answers)} | {SUMMARY, CHOOSE}
            while history and history[-1] not in live:
                history.pop()
            if not history:
                return Reply(texts.dialog_first_step() + "\n\n" + self._prompt(dialog, step_name, answers))
            previous = history.pop()
            return await self._goto(chat, dialog, previous, answers, history)
        if step_name == SUMMARY:
            return await self._at_summary(chat, dialog, word, answers, history)
        if step_name == CHOOSE:
            return await self._choose(chat, dialog, word, answers, history)

        step = dialog.step(step_name)
        keep = word == CONFIRM and word not in step.takes and step.name in answers
        if word in (CONFIRM, EDIT, RESUME, RESTART) and word not in step.takes and not keep:
            # A control word is never an answer (确认 is no contact name): say where we are.
            return Reply(texts.dialog_word_not_answer(chat.message.text.strip()[:20], step.label) + "\n\n"
                         + self._prompt(dialog, step_name, answers, editing=bool(state.data.get("editing"))))
        try:
            # 确认 at a step already answered (上一步 shows it as 当前填写) keeps that answer.
            value = answers[step.name] if keep else step.parse(chat.message.text, answers)
            step.check(value)
        except Invalid as exc:
            return await self._answered(chat, dialog, self._prompt(dialog, step_name, answers,
                                                                    editing=bool(state.data.get("editing"))), exc.message)
        except Stop as stop:
            changing_saved = amending(chat)
            await self._end(chat, dialog)
            return Reply(stop.message + (texts.dialog_amend_stopped(dialog.title) if changing_saved else ""))
        if answers.get(step.name, value) != value:
            for other in dialog.steps:
                if step.name in other.depends_on:
                    answers.pop(other.name, None)
        answers[step.name] = value
        history.append(step.name)
        editing = bool(state.data.get("editing"))
        following = self._next(dialog, answers, None if editing else step.name)
        if editing and following != SUMMARY:
            # A change that makes another question apply asks it before the summary.
            return await self._goto(chat, dialog, following, answers, history, editing=True)
        if editing:
            # Back at the summary: 上一步 walks the form from its last step, as after
            # filling it in order (the edit's detour made it go between the summary
            # and the item changed, for ever).
            history = [s.name for s in dialog.applicable(answers)]
        return await self._goto(chat, dialog, following, answers, history)

    def current_prompt(self, chat: Chat, dialog: Dialog) -> str:
        """What the user's open dialog is asking now (to repeat it)."""
        state = chat.dialog
        assert state is not None
        step_name = state.name.split(":", 1)[1]
        if step_name == RESUME_STEP:
            return texts.dialog_resume_choice()
        return self._prompt(dialog, step_name, dict(state.data.get("answers") or {}), amending(chat),
                            editing=bool(state.data.get("editing")))

    # -- internals ------------------------------------------------------------

    async def _at_summary(self, chat, dialog, word, answers, history) -> Reply:
        if word == CONFIRM and dialog.missing(answers) is not None:  # a draft from before a change of steps
            return await self._goto(chat, dialog, SUMMARY, answers, history)
        if word == CONFIRM:
            reply, done = await dialog.on_confirm(chat, dialog.clean(answers))
            if done:
                await self._end(chat, dialog)
            return reply
        if word == EDIT:
            return await self._goto(chat, dialog, CHOOSE, answers, history + [SUMMARY])
        return await self._answered(chat, dialog, self._prompt(dialog, SUMMARY, answers, amending(chat)),
                                    texts.dialog_summary_choice())

    async def _choose(self, chat, dialog, word, answers, history) -> Reply:
        editable = [s for s in dialog.applicable(answers) if s.editable]
        chosen = None
        if word.isdecimal() and 1 <= int(word) <= len(editable):  # isdigit takes "፩", which int() refuses
            chosen = editable[int(word) - 1]
        else:
            chosen = next((s for s in editable if normalize_command(s.label) == word), None)
            # A label's start or part (手机 for 手机号码, 信用代码), if it names one item only.
            near = [s for s in editable if len(word) >= 2 and word in normalize_command(s.label)]
            if chosen is None and len(near) == 1:
                chosen = near[0]
        if chosen is None:
            return await self._answered(chat, dialog, self._prompt(dialog, CHOOSE, answers),
                                        texts.dialog_choose_again(len(editable)))
        return await self._goto(chat, dialog, chosen.name, answers, history, editing=True)

    async def _answered(self, chat: Chat, dialog: Dialog, prompt: str, refusal: str | None = None) -> Reply:
        """The reply to text the step cannot take: a question is answered
        (:attr:`Dialog.answer`) and the step asked again; anything else gets
        ``refusal`` (what was wrong) before the prompt."""
        if dialog.answer is not None and is_asking(chat.message.text):
            answer = await dialog.answer(chat, chat.message.text)
            if answer:
                kept = bool(chat.dialog and chat.dialog.data.get("answers"))
                return Reply(f"{answer}\n\n{texts.dialog_after_question(dialog.title, amending(chat), kept)}\n\n{prompt}")
        return Reply(f"{refusal}\n\n{prompt}" if refusal else prompt)

    def _next(self, dialog: Dialog, answers: dict, after: str | None) -> str:
        """The step after ``after`` (or the first unanswered one when ``after`` is None)."""
        steps = dialog.applicable(answers)
        if after is None:
            return next((s.name for s in steps if s.name not in answers), SUMMARY)
        names = [s.name for s in steps]
        index = names.index(after) if after in names else -1
        return names[index + 1] if index + 1 < len(names) else SUMMARY

    async def _goto(self, chat, dialog, step_name, answers, history, editing: bool = False,
                    context: dict | None = None) -> Reply:
        if step_name in (SUMMARY, CHOOSE):
            # The summary (and 确认 from it) only once every question that applies
            # is answered: 上一步 after 修改 could come back to it with the new
            # entity type's questions still open.
            missing = dialog.missing(answers)
            if missing is not None:
                step_name, editing = missing.name, True
        await self._save(chat, dialog, step_name, answers, history, editing=editing, context=context)
        return Reply(self._prompt(dialog, step_name, answers, amending(chat), editing=editing))

    def _prompt(self, dialog: Dialog, step_name: str, answers: dict, amending: bool = False,
                editing: bool = False) -> str:
        if step_name == SUMMARY:
            return texts.dialog_summary(dialog.title, self._summary_lines(dialog, answers), amending)
        if step_name == CHOOSE:
            editable = [s for s in dialog.applicable(answers) if s.editable]
            return texts.dialog_choose([s.label for s in editable])
        step = dialog.step(step_name)
        current = answers.get(step.name)
        prompt = step.prompt(answers)
        if editing:  # an item chosen from the numbered list: "第 5 步" would contradict its number there
            prompt = re.sub(r"^第 \d+ 步：", "", prompt)
        if current not in (None, ""):
            prompt += "\n" + texts.dialog_current_value(step.show(current))
        return prompt + "\n" + texts.DIALOG_CONTROLS

    def _summary_lines(self, dialog: Dialog, answers: dict) -> list[str]:
        return [f"{s.label}：{s.show(answers.get(s.name))}" for s in dialog.applicable(answers)]

    async def _save(self, chat, dialog, step_name, answers, history, draft=None, editing=False,
                    amending: bool | None = None, context: dict | None = None) -> None:
        if amending is None:  # carried along the dialog: it changes saved data (修改资料)
            amending = bool(chat.dialog and chat.dialog.data.get("amending"))
        if context is None:  # carried along the dialog too
            context = dialog_context(chat)
        data = {"answers": answers, "history": history, "editing": editing, "amending": amending, "context": context}
        if draft is not None:
            data["draft"] = draft
        state = DialogState(name=f"{dialog.name}:{step_name}", data=data)
        await chat.services.dialogs.save(chat.openid, state)
        chat.dialog = state
        if step_name != RESUME_STEP:
            await chat.services.dialogs.save_draft(
                chat.openid, dialog.name,
                {"step": step_name, "answers": answers, "history": history, "context": context},
            )

    async def _end(self, chat: Chat, dialog: Dialog) -> None:
        await chat.services.dialogs.clear(chat.openid)
        await chat.services.dialogs.clear_draft(chat.openid, dialog.name)
        # A step the consent gate held (确认) must not run after a later 同意:
        # the dialog it belonged to is over.
        await chat.services.dialogs.pop_resume(chat.openid)
        chat.dialog = None
