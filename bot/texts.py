"""Every sentence the bot says to users, in one place (Simplified Chinese)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datetime as dt

    from bot.agreement import AgreementVersion, Section

HELP = (
    "您可以发送以下指令：\n"
    "· 帮助：查看本菜单\n"
    "· 条款：阅读《微拓软件服务使用协议》各节摘要；条款 N：阅读第 N 节全文\n"
    "· 同意 / 不同意：对当前版本的协议作出选择；撤回同意：撤回已作出的同意；同意状态：查看您同意了哪个版本\n"
    "· 注册：注册微拓商家账户（约一分钟）\n"
    "· 我的账户：查看商家资料和状态；修改资料；注销账户\n"
    "· 通知设置：查看和退订通知（退订 服务公告 / 订阅 服务公告）\n"
    "· 导出我的数据：获取我们保存的您的全部数据"
)

DIALOG_TEXT_ONLY = "这一步需要您用文字回复（图片、语音等无法作为答案）。"
ONLY_TEXT = "目前只能处理文字消息，请用文字描述您的问题。\n\n" + HELP

INTERNAL_ERROR = "抱歉，系统开了个小差，请稍后再试。"

STORAGE_DOWN = "抱歉，系统暂时无法读取或保存数据，请稍后再试。如果您刚才提交了内容（如同意协议、注册资料），它可能没有保存成功，请稍后再发送一次（重复发送不会重复记录）。"
UNKNOWN_MENU_ITEM = "该菜单项暂不可用。"

DIALOG_UNAVAILABLE = "抱歉，对话等部分功能（注册、导出数据等）暂时不可用，请稍后再试。您仍然可以直接提问。"

CONTINUED = "（未完，见下一条消息）"

CONTACT = "如需人工帮助，请访问微拓官网的联系信息页与我们联系。"


def beijing_date(value) -> str:
    """A moment's date in Beijing."""
    from bot.agreement import CHINA

    return value.astimezone(CHINA).strftime("%Y-%m-%d")


def beijing_time(value) -> str:
    """A moment in Beijing time: the date, and the time unless it is midnight."""
    from bot.agreement import CHINA

    local = value.astimezone(CHINA)
    return local.strftime("%Y-%m-%d" if (local.hour, local.minute) == (0, 0) else "%Y-%m-%d %H:%M")


def beijing_when(value) -> str:
    """:func:`beijing_time` to stand between two Chinese words (将于{…}生效):
    `` 2026-12-05 `` for a day, `` 2026-12-05 20:45（北京时间）`` for a time of
    day, which users outside China would misread unmarked (the CLI and the
    console say it too); no space after the full-width bracket."""
    from bot.agreement import CHINA

    local = value.astimezone(CHINA)
    if (local.hour, local.minute) == (0, 0):
        return f" {beijing_time(value)} "
    return f" {beijing_time(value)}（北京时间）"


def consent_prompt(version: "AgreementVersion", first: str | None = "阅读各节摘要") -> str:
    """Ask for 同意 or 不同意; ``first``: what 条款 shows them before they choose
    (None when the message has said how to read the agreement already: once is enough)."""
    ask = f"请回复“同意”接受《{version.title}》（版本 {version.version}），或回复“不同意”。"
    return ask + (f"回复“条款”可先{first}。" if first else "")


def without_consent_prompt(text: str, version: "AgreementVersion") -> str:
    """``text`` with its consent prompt (whichever ``first``) taken out: for a
    reply shown under another prompt, which asks once."""
    for first in ("阅读各节摘要", "查看修改"):
        text = text.replace(consent_prompt(version, first), "")
    return text


def welcome(version: "AgreementVersion", accepted: bool) -> str:
    lines = [
        "欢迎关注微拓（WETOOP）！我们为商家提供社交电商工具。",
        "",
        f"使用我们的服务前，请了解《{version.title}》（版本 {version.version}）的要点：",
        *[f"· {line}" for line in version.summary],
        "",
        "回复“条款”查看各节摘要，回复“条款 N”阅读第 N 节全文。",
    ]
    if accepted:
        lines.append(f"您已同意当前版本（{version.version}），无需再次确认。")
    else:  # the line above says how to read it
        lines.append(consent_prompt(version, first=None))
    return "\n".join(lines)


def terms_overview(current: "AgreementVersion", upcoming: "list[AgreementVersion]",
                   accepted: bool | None = None) -> str:
    """The version in force, and every version published to take effect later
    (``accepted``: as :func:`with_upcoming`)."""
    lines = [f"《{current.title}》版本 {current.version}（自 {beijing_date(current.effective_at)} 起生效）", ""]
    if current.changes:  # "回复“条款”查看修改" (the re-consent prompt, amendment notices) shows them here
        lines += [*change_summary(current), ""]
    lines += [f"{s.number}. {s.title}：{s.summary}" for s in current.sections]
    lines += ["", "回复“条款 N”阅读第 N 节全文，例如“条款 1”" + ("；回复“条款 前言”阅读协议前言。" if current.preamble else "。")]
    return with_upcoming("\n".join(lines), upcoming, accepted)


def change_summary(version: "AgreementVersion") -> list[str]:
    """The lines of ``version``'s change summary as 条款 shows them for the version in force."""
    return ["本版本的修改摘要：", *[f"· {line}" for line in version.changes]]


def what_changed(current: "AgreementVersion", previous: "AgreementVersion | None",
                 upcoming: "list[AgreementVersion]", accepted: bool | None = None) -> str:
    """Asked what the agreement's amendments changed: the version in force's
    change summary (as 条款 shows it) and where to compare it with the one it
    replaced, or that it was never changed; then the versions to come
    (``accepted``: as :func:`with_upcoming`)."""
    if previous is None:
        lines = [f"《{current.title}》自版本 {current.version}（{beijing_date(current.effective_at)} 起生效）以来没有修改过。",
                 "回复“条款”查看各节摘要。"]
    else:
        lines = [f"《{current.title}》最近一次修改：版本 {current.version}，自 {beijing_date(current.effective_at)} 起生效"
                 f"（此前为版本 {previous.version}）。",
                 *(change_summary(current) if current.changes else []),
                 "",
                 f"回复“条款”查看现行版本各节摘要；回复“条款 {previous.version} N”可阅读修改前的第 N 节，与现行版本对照。"]
    return with_upcoming("\n".join(lines), upcoming, accepted)


def upcoming_consent(accepted: bool | None) -> str:
    """What a version to come asks of the reader: only an acceptance of the
    version in force is asked again when it takes effect (the middleware
    ``ask_again_after_amendment``); anyone else's 同意 after that is to the new
    version (one given before is to the version in force, and its reply, with
    ``accepted``, says they will be asked again). ``accepted`` None: the
    reader's consent is not known (the CLI, a database that is down)."""
    if accepted:
        return "届时我们会请您重新确认。"
    if accepted is None:
        return "已同意现行版本的，届时我们会请您重新确认；其他情况下，生效后同意即是同意新版本。"
    return "生效后，同意即是同意新版本。"


def _upcoming(version: "AgreementVersion", accepted: bool | None) -> list[str]:
    return [
        f"【即将生效】版本 {version.version} 将于{beijing_when(version.effective_at)}生效。修改摘要：",
        *[f"· {line}" for line in version.changes],
        f"{upcoming_consent(accepted)}回复“条款 {version.version} N”可提前阅读新版第 N 节。",
    ]


def with_upcoming(text: str, upcoming: "list[AgreementVersion]", accepted: bool | None = None) -> str:
    """``text`` followed by the versions published to take effect later: who
    accepts or follows during a notice period is told of them too (the
    amendment notice went to those who had accepted before). ``accepted``:
    whether the reader accepted the version in force (see :func:`upcoming_consent`)."""
    lines = [text]
    for version in upcoming:
        lines += ["", *_upcoming(version, accepted)]
    return "\n".join(lines)


def _changes_since(versions: "list[AgreementVersion]") -> list[str]:
    """The change summaries of ``versions``, oldest first, each under its version when several."""
    if len(versions) == 1:
        return [f"· {line}" for line in versions[0].changes]
    lines: list[str] = []
    for version in versions:
        lines.append(f"版本 {version.version}（{beijing_date(version.effective_at)} 起生效）：")
        lines += [f"· {line}" for line in version.changes]
    return lines


# ``cite``: how the user names the version in a command: "" for the version in
# force, "2026-12-01 " for another one (so that a hint leads back to the same text).


def terms_section(version: "AgreementVersion", section: "Section") -> str:
    return f"《{version.title}》版本 {version.version}\n\n{section.full_text()}"


def terms_preamble(version: "AgreementVersion", cite: str = "") -> str:
    """The preamble, its paragraphs numbered as the Q&A cites them (前言.2)."""
    paragraphs = [f"{i}. {text}" for i, text in enumerate(version.preamble, start=1)]
    return (f"《{version.title}》版本 {version.version} 前言\n\n" + "\n\n".join(paragraphs)
            + f"\n\n回复“条款 {cite}1”起阅读各节全文。")


def terms_clause(version: "AgreementVersion", section: "Section", clause: int, cite: str = "") -> str:
    return (f"《{version.title}》版本 {version.version} 第{section.number}节《{section.title}》\n\n"
            f"{section.clause_number(clause - 1)} {section.clauses[clause - 1]}\n\n"
            f"回复“条款 {cite}{section.number}”阅读整节。")


def no_such_clause(section: "Section", asked: str, cite: str = "") -> str:
    return (f"没有第 {asked} 款。第 {section.number} 节共 {len(section.clauses)} 款，"
            f"请回复“条款 {cite}{section.number}.1”到“条款 {cite}{section.number}.{len(section.clauses)}”，"
            f"或“条款 {cite}{section.number}”阅读整节。")


def no_such_section(version: "AgreementVersion", asked: str, cite: str = "", unit: str = "节") -> str:
    """``unit``: 款 when a clause was asked for (条款 9.1: no section 9, so no clause 9.1)."""
    which = f"版本 {version.version} " if cite else "当前版本"
    return (f"没有第 {asked} {unit}。{which}共 {len(version.sections)} 节，"
            f"请回复“条款 {cite}1”到“条款 {cite}{len(version.sections)}”。")


def version_overview(version: "AgreementVersion", current: "AgreementVersion", withdrawn: bool = False) -> str:
    """A version other than the one in force (past, upcoming or withdrawn), section by section."""
    if withdrawn:  # never took effect (withdrawn_note, above it, says when and why)
        when = f"原定{beijing_when(version.effective_at)}生效，已撤回"
    elif version.effective_at > current.effective_at:
        when = f"将于{beijing_when(version.effective_at)}生效"
    else:
        when = f"自 {beijing_date(version.effective_at)} 起生效，已由版本 {current.version} 取代"
    lines = [f"《{version.title}》版本 {version.version}（{when}）", ""]
    lines += [f"{s.number}. {s.title}：{s.summary}" for s in version.sections]
    lines += ["", f"回复“条款 {version.version} N”阅读此版本第 N 节全文；回复“条款”查看当前版本。"]
    return "\n".join(lines)


def withdrawn_note(withdrawal: str) -> str:
    """Before a withdrawn version's text: ``withdrawal`` says when and why (VersionNotFound's message)."""
    return f"【已撤回】{withdrawal}以下是撤回前公布的内容，仅供查阅。\n\n"


def no_such_version(asked: str, refusal: "Exception | None" = None) -> str:
    """``refusal``: the lookup's :class:`~bot.terms.VersionNotFound` (a withdrawn version says when and why)."""
    if refusal is not None and getattr(refusal, "withdrawn", False):
        return f"{refusal.message}回复“条款”查看当前版本。"  # type: ignore[attr-defined]
    return f"没有版本为 {asked} 的协议。回复“条款”查看当前版本。"


EDIT_PROFILE_HINT = "回复“修改资料”即可修改您的注册资料（名称、联系人、手机号码、邮箱等）。"
#: Questions about something the bot itself does, and the reply that does it:
#: added under the quoted clause, which says what the agreement allows but not how.
COMMAND_HINTS = (
    (("导出", "下载数据", "下载我的数据", "备份数据"), "如需导出，回复“导出我的数据”即可获取我们保存的您的全部数据。"),
    (("不想再收", "不要再收", "不想收到", "别给我发", "不要给我发", "别发了", "不要发了", "别再发", "不要再发", "拒收", "屏蔽",
      "任何消息", "所有消息", "全部消息"),
     "回复“退订 全部”即可停止接收所有非重要通知；回复“通知设置”可逐类查看或更改（标注“重要”的通知仍会送达）。"),
    (("退订", "订阅", "不想收", "关闭通知", "通知设置"), "回复“通知设置”可查看或更改通知订阅（重要通知仍会送达）。"),
    (("改手机", "换手机", "改电话", "换电话", "换号", "改号", "手机号填错", "号码填错", "填错了", "改邮箱", "换邮箱", "修改邮箱",
      "改名称", "改名字", "改联系人", "换联系人", "修改联系人", "修改手机", "修改电话", "修改资料", "修改信息", "改资料", "改信息",
      "更新资料", "更改资料", "资料变更", "信息变更"),
     EDIT_PROFILE_HINT),
    (("注销", "销户", "关闭账号", "关闭账户", "删除账号", "删除账户"), "回复“注销账户”可注销商家账户（同意记录会保留）。"),
    (("撤回同意", "取消同意", "撤销同意"), "回复“撤回同意”即可撤回您对协议的同意。"),
)
#: Words of a question about registering; the hint depends on the account (chat.free_text).
REGISTRATION_WORDS = ("注册", "入驻", "开店")
REGISTRATION_HINT = "回复“注册”即可开始注册微拓商家账户，约一分钟。"
REGISTERED_HINT = "您已注册微拓商家账户：回复“我的账户”查看，回复“修改资料”修改。"


def consent_hint(text: str) -> str | None:
    """For consent said in a sentence (not recorded: only the bare word is), the
    exact reply; a refusal ("我不同意了") is pointed to 不同意, never to 同意."""
    if any(word in text for word in ("不同意", "不想同意", "拒绝")):
        return "如您不同意协议，请单独回复“不同意”三个字（不加其他文字）。"
    if any(word in text for word in ("我同意", "同意吧", "同意了", "同意协议", "同意条款")):
        return "如您同意协议，请单独回复“同意”两个字（不加其他文字）。"
    return None


def question_too_long(limit: int) -> str:
    return f"问题太长了，请控制在 {limit} 个字以内，简单说说您想了解协议的哪方面即可。"


def question_hint(text: str) -> str | None:
    """What follows the Q&A's answer to ``text`` in chat (and in ``wetoop-bot
    ask``): the reply that does what it asks about, or the exact consent word."""
    if "撤回" in text and "同意" in text:  # "同意协议以后还能撤回吗": about withdrawing, not a consent
        return command_hint("撤回同意")
    return command_hint(text) or consent_hint(text)


def waiting_for_consent(command: str) -> str:
    """An answer typed for a form that waits for the user's consent (注册 → 个人 → 王秀英 …)."""
    return (f"“{command}”还没有开始：您需要先同意协议。请回复“同意”，同意后会自动继续“{command}”；"
            f"回复“条款”可先阅读协议，回复“取消”则不再继续。")


DRAFT_DISCARDED = "已删除您未完成的商家注册资料。需要时回复“注册”重新开始。"
def pending_cancelled(command: str) -> str:
    """取消 after a command that waited for the user's consent (注册)."""
    return f"已取消“{command}”：回复“同意”只会记录您对协议的同意，不会再继续“{command}”。回复“帮助”查看可用指令。"


NO_DIALOG_OPEN = "当前没有正在填写的内容，“{word}”无需操作。回复“帮助”查看可用指令。"
#: Added to a reply that found no clause when a registration was left unfinished.
UNFINISHED_REGISTRATION = "您有一份未完成的商家注册资料（保存 7 天），回复“注册”可继续填写。"
#: An answer for a registration step sent after its dialog ended (30 minutes without a message).
DIALOG_TIMED_OUT = "您的商家注册已超过 30 分钟没有回复，填写已暂停，刚才发送的内容没有保存。"


def command_hint(question: str) -> str | None:
    """The reply that does what ``question`` asks about, if the bot does it."""
    for words, hint in COMMAND_HINTS:
        if any(word in question for word in words):
            return hint
    return None


def consent_exact_words(word: str) -> str:
    """A near miss of ``word`` (同意, 不同意 or 撤回同意: 我同意, 同意。): what it was not taken for, and what is."""
    return (
        f"这条消息不会被记录为{word}：为确保这是您明确的意思，请单独回复“{word}”"
        "（不加其他文字或标点），或点击菜单中的对应项。回复“条款”可先阅读协议。"
    )


def choice_of_a_version(word: str, named: "AgreementVersion", current: "AgreementVersion", pending: bool) -> str:
    """``word`` (同意/不同意) followed by a version: what applies to that version."""
    if pending:
        return (f"版本 {named.version} 尚未生效（将于{beijing_when(named.effective_at)}生效），现在还不能对它作出选择；"
                f"它生效后我们会请您确认。现行版本是 {current.version}，回复“条款”查看。")
    if named.version != current.version:
        return (f"版本 {named.version} 已不是现行版本，只能对现行版本 {current.version} 作出选择。"
                f"回复“条款”阅读现行版本，单独回复“{word}”即可记录您的选择。")
    return (f"版本 {named.version} 就是现行版本。为确保是您明确的意思，请单独回复“{word}”"
            "（不加其他文字或标点）或点击菜单，我们会记录您对该版本的选择。")


def accepted(version: "AgreementVersion") -> str:
    return f"已记录：您同意了《{version.title}》（版本 {version.version}）。感谢您的信任！回复“撤回同意”可随时撤回。"


def already_accepted(version: "AgreementVersion") -> str:
    return f"您已同意当前版本（{version.version}），无需重复操作。回复“撤回同意”可随时撤回。"


def consent_status(status: str, current: "AgreementVersion", version: str | None, at: dt.datetime | None) -> str:
    """The user's own consent: ``status`` (see ``bot.consent.STATUSES``) and
    their latest choice (its version and time), if any."""
    when = f"于{beijing_when(at)}" if at is not None else ""
    if status == "accepted":
        return (f"您已{when}同意《{current.title}》（版本 {current.version}，即现行版本）。"
                "回复“撤回同意”可随时撤回，回复“导出我的数据”可查看同意记录。")
    if status == "outdated":
        return (f"您{when}同意的是版本 {version}；协议已更新为版本 {current.version}，您尚未同意新版本。"
                + consent_prompt(current, first="查看修改"))
    if status == "declined":
        return f"您{when}选择了不同意（版本 {version}）。" + consent_prompt(current)
    if status == "withdrawn":
        return f"您{when}撤回了对协议的同意（版本 {version}）。" + consent_prompt(current)
    return f"您尚未同意《{current.title}》（版本 {current.version}）。" + consent_prompt(current)


def what_declining_does(place: str | None, sentence: str | None) -> str:
    """What follows from not agreeing (before choosing), with the agreement's
    own sentence on it (``place`` such as ``7.1``) when it has one."""
    quote = f"\n协议第{place}款：“{sentence}”" if place and sentence else ""
    return (
        "是否同意由您决定：单独回复“不同意”即可记录，已同意的也可随时回复“撤回同意”。\n"
        "不同意或撤回后，需要同意协议的服务（如商家注册、商家服务）将停止为您提供。您仍然可以：\n"
        "· 回复“条款”阅读协议；\n"
        "· 回复“导出我的数据”导出我们保存的您的数据（停止使用前可先导出）；\n"
        f"· {CONTACT}{quote}"
    )


def declined(version: "AgreementVersion", again: bool = False) -> str:
    """``again``: the user had declined this version already (nothing new recorded)."""
    first = (f"您此前已选择不同意《{version.title}》（版本 {version.version}），无需重复操作。" if again
             else f"已记录：您不同意《{version.title}》（版本 {version.version}）。")
    return (
        first + "\n"
        "需要同意协议的服务（如商家注册、商家服务）将停止为您提供。您仍然可以：\n"
        "· 回复“条款”阅读协议；\n"
        "· 回复“导出我的数据”导出我们保存的您的数据；\n"
        f"· {CONTACT}\n"
        "如改变主意，随时回复“同意”即可。"
    )


def decline_upcoming(current: "AgreementVersion", upcoming: "AgreementVersion") -> str:
    """不同意 from one who accepted the version in force while a newer one waits
    to take effect: nothing is recorded (a refusal of the version they accepted
    would end their service at once, and say nothing of the new one)."""
    return (
        f"您已同意现行的《{current.title}》（版本 {current.version}），在新版本生效前它继续有效，服务照常。\n"
        f"新版本 {upcoming.version} 将于{beijing_when(upcoming.effective_at)}生效。如您不同意新版本："
        "它生效后我们会请您确认，届时回复“不同意”即可，需要同意协议的服务随之停止；在此之前可随时回复“导出我的数据”导出您的数据。\n"
        "如现在就不再同意现行版本，请回复“撤回同意”。"
    )


def withdrawn(version: str) -> str:
    return (
        f"已记录：您撤回了对协议（版本 {version}）的同意。\n"
        "需要同意协议的服务将停止为您提供；您仍可阅读协议、导出数据或联系我们。随时回复“同意”可重新同意。"
    )


NOTHING_TO_WITHDRAW = "您目前没有有效的同意记录，无需撤回。回复“条款”可阅读协议。"


def reconsent(current: "AgreementVersion", previous: str, changed: "list[AgreementVersion]") -> str:
    """``changed``: every version that took effect since ``previous``, up to ``current``."""
    lines = [
        f"《{current.title}》已更新：版本 {current.version} 自 {beijing_date(current.effective_at)} 起生效"
        f"（您此前同意的是版本 {previous}）。修改摘要：",
        *_changes_since(changed),
        consent_prompt(current),
    ]
    return "\n".join(lines)


def superseded_before_consent(current: "AgreementVersion", asked: str, changed: "list[AgreementVersion]",
                              choice: str = "同意") -> str:
    """A 同意 (or 不同意: ``choice``) to the version the user was asked about, after a newer one took effect."""
    lines = [
        f"您收到的同意请求是针对版本 {asked} 的；此后《{current.title}》版本 {current.version} "
        f"已于 {beijing_date(current.effective_at)} 生效，您的“{choice}”尚未记录。修改摘要：",
        *_changes_since(changed),
        consent_prompt(current),
    ]
    return "\n".join(lines)


def consent_unconfirmed(current: "AgreementVersion", choice: str = "同意") -> str:
    """A 同意 (or 不同意: ``choice``) when which version the user was shown is not known."""
    lines = [
        f"请确认您的选择针对的版本：《{current.title}》现行版本为 {current.version}"
        f"（{beijing_date(current.effective_at)} 起生效），您的“{choice}”尚未记录。要点：",
        *[f"· {line}" for line in current.summary],
        consent_prompt(current),
    ]
    return "\n".join(lines)


def consent_needed(version: "AgreementVersion") -> str:
    return f"此功能需要您先同意《{version.title}》（版本 {version.version}）。\n" + consent_prompt(version)


def consent_needed_after_update(current: "AgreementVersion", previous: str, changed: "list[AgreementVersion]") -> str:
    """:func:`consent_needed` for a user who accepted an earlier version: what changed since."""
    return "此功能需要您先同意更新后的协议。\n" + reconsent(current, previous, changed)


def amendment_notice(version: "AgreementVersion") -> str:
    if version.published_at is not None and version.effective_at <= version.published_at:
        # A new feature or a legal change, in force at publication: the ground the agreement allows for it, said.
        ground = {"new_feature": "因新功能上线", "legal": "因法律法规要求"}.get(version.reason or "", "")
        when = (f"已于 {beijing_date(version.effective_at)} 更新为版本 {version.version}"
                f"（{ground + '，' if ground else ''}即时生效）")
    else:
        when = f"将于{beijing_when(version.effective_at)}更新为版本 {version.version}"
    lines = [
        f"《{version.title}》{when}。修改摘要：",
        *[f"· {line}" for line in version.changes],
        AMENDMENT_CHAT_HINT,
    ]
    return "\n".join(lines)


#: The last lines of the amendment notices as chat sends them; the mini-program
#: shows its own (``bot.api_texts.for_app``), where there is nothing to reply to.
AMENDMENT_CHAT_HINT = "回复“条款”查看详情。如不同意修改后的条款，您可以停止使用服务，并可先回复“导出我的数据”导出数据。"
WITHDRAWN_CHAT_HINT = "回复“条款”查看现行协议。"
SUSPENDED_CHAT_HINT = "（公众号回复“我的账户”查看详情）。"
RETURNED_CHAT_HINT = "请回复“修改资料”按意见修改并确认（在小程序中也可以修改），我们会重新审核。"
REREGISTER_CHAT_HINT = "：回复“注册”即可重新提交资料。"


def sentence(text: str) -> str:
    """``text`` (an admin's reason) ended as a sentence: 。 added unless it ends
    in a sentence's punctuation already, inside closing quotes or brackets too (…。”)."""
    text = text.rstrip()
    return text if text.rstrip("”’」』）)\"'")[-1:] in ("。", "！", "？", "!", "?", ".", "…") else text + "。"


def amendment_withdrawn(version: "AgreementVersion", reason: str) -> str:
    return (
        f"《{version.title}》版本 {version.version}（原定{beijing_when(version.effective_at)}生效）的修改已撤回，"
        f"不会生效。原因：{sentence(reason)}\n{WITHDRAWN_CHAT_HINT}"
    )


def export_ready(summary: dict, url: str) -> str:
    return (
        f"我们保存的您的数据：同意记录 {summary['consents']} 条，当前协议状态：{summary['consent_status']}；"
        f"商家资料：{summary['merchant']}。\n"
        f"完整数据请在 24 小时内打开以下链接查看并保存（页面可下载 JSON 文件），链接只能打开一次：\n{url}"
    )


CONSENT_STATUS = {
    "none": "尚未作出选择",
    "accepted": "已同意当前版本",
    "outdated": "同意的是旧版本，需重新确认",
    "declined": "不同意",
    "withdrawn": "已撤回同意",
}


# -- dialogs -----------------------------------------------------------------------

DIALOG_RESTARTED = "好的，已清空填写的内容，从第一步重新开始。"
DIALOG_CONTROLS = "（回复“上一步”返回，回复“取消”退出）"


def dialog_current_value(value: str) -> str:
    return f"当前填写：{value}"


def _subject(title: str) -> str:
    """What a dialog's saved record is called: 商家注册 → 商家 (资料, 资料修改)."""
    return title.removesuffix("注册")


def dialog_waiting(title: str, amending: bool = False, declined: bool = False) -> str:
    """Where an open dialog stands, after a command answered in its middle; ``declined``
    when that command was 不同意 or 撤回同意 (the form can no longer be sent as it stands)."""
    if declined:
        what = f"{_subject(title)}资料修改" if amending else title
        return f"（您的{what}还没有完成，提交需要您同意协议：回复“同意”后可继续，回复“取消”退出。）"
    if amending:  # 修改资料 of a saved record: 取消 keeps it as it was
        return f"（您的{_subject(title)}资料修改还没有完成：回复内容继续修改，回复“取消”保持原资料不变。）"
    return f"（您的{title}还没有完成：回复内容继续填写，回复“取消”退出。）"


#: A question about the registration form, typed in the middle of it.
#: Questions about the form's own items, answered at any step (registration's ``_answer``).
FORM_NO_LICENCE = ("没有营业执照也可以注册：请回复“重新填写”，在第 1 步选择“个人”（个人无需统一社会信用代码）。"
                   "个体工商户的营业执照上有统一社会信用代码（92 开头），请按“企业”填写。")
FORM_CREDIT_CODE = ("统一社会信用代码是营业执照上的 18 位代码（数字和大写字母），印在执照的左上方；"
                    "个体工商户的以 92 开头。没有营业执照的个人请回复“重新填写”并选择“个人”。")
FORM_INDIVIDUAL_BUSINESS = ("个体工商户有营业执照：请选择“企业”，填写营业执照上的名称和统一社会信用代码（92 开头）；"
                            "没有营业执照的个人选择“个人”。")
NOT_IN_AGREEMENT_PRICE = "《微拓软件服务使用协议》中没有关于价格、收费或退款的条款。产品和服务的价格请咨询微拓：请访问微拓官网的联系信息页与我们联系。"
REGISTRATION_FORM_HELP = (
    "《微拓软件服务使用协议》第2节：注册时我们会请您提供实体（个人或企业）信息、联系人和联系方式，"
    "您应保证这些信息真实准确、完整无误，且微拓可以通过这些信息联系到您（第2.1、2.2款）；"
    "您的个人数据按微拓隐私策略处理（第3.1款，回复“条款 3”阅读）。"
    "企业需填写统一社会信用代码，个人需确认年满 18 周岁；邮箱可以回复“跳过”不填，其余各项必填。"
)


def dialog_after_question(title: str, amending: bool = False, kept: bool = True) -> str:
    """Said after answering a question typed in the middle of a dialog;
    ``kept``: some answers are in (at the first step, none is)."""
    doing = f"{_subject(title)}资料修改" if amending else title
    return f"（以上是对您问题的回答。您的{doing}还没有完成{'，已填写的内容仍然保留' if kept else ''}，请继续：）"


def dialog_command_inside(title: str, word: str, amending: bool = False) -> str:
    doing = f"修改{_subject(title)}资料" if amending else f"填写{title}"
    return f"您正在{doing}，“{word}”不能作为这一步的内容。请按下面的提示回复，回复“取消”可退出。"


def dialog_cancelled(title: str) -> str:
    return f"已取消{title}，您填写的内容没有保存。需要时回复“帮助”查看可用指令。"


def dialog_word_not_answer(word: str, label: str) -> str:
    return f"“{word}”是操作指令，不能作为{label}。请先回答下面的问题。"


def dialog_already_stored(title: str) -> str:
    return (f"您的{_subject(title)}资料在此前确认时已经保存，无需取消。"
            "回复“我的账户”查看状态；需要修改时回复“修改资料”。")


def dialog_amend_cancelled(title: str) -> str:
    return f"已取消修改，您的{_subject(title)}资料保持不变。需要时回复“帮助”查看可用指令。"


def dialog_first_step() -> str:
    return "已经是第一步了。"


def dialog_summary(title: str, lines: list[str], amending: bool = False) -> str:
    if amending:  # 修改资料 of a saved record: no registration under way
        head, controls = f"请核对您的{_subject(title)}资料：", "回复“确认”保存，“修改”更改某一项，“取消”保持原资料不变。"
    else:
        head, controls = f"请核对{title}信息：", "回复“确认”提交，“修改”更改某一项，“取消”放弃。"
    return "\n".join([head, *[f"· {line}" for line in lines], "", controls])


def dialog_amend_stopped(title: str) -> str:
    return f"\n（您原有的{_subject(title)}资料没有改变。）"


def dialog_summary_choice() -> str:
    return "请回复“确认”、“修改”或“取消”。"


def dialog_choose(labels: list[str]) -> str:
    options = "\n".join(f"{i}. {label}" for i, label in enumerate(labels, start=1))
    return f"请回复要修改的项目编号：\n{options}\n（回复“上一步”返回核对页）"


def dialog_choose_again(count: int) -> str:
    return f"请回复 1 到 {count} 之间的编号，或项目名称。"


def dialog_resume_offer(title: str, lines: list[str], amending: bool = False) -> str:
    again = "回复“重新开始”从当前资料重新修改" if amending else "回复“重新开始”从头填写"
    return "\n".join(
        [f"您有一份未完成的{title}：", *[f"· {line}" for line in lines], "", f"回复“继续”接着填写，{again}，回复“取消”放弃。"]
    )


def amend_title(title: str) -> str:
    """What a dialog that changes saved data is called (修改资料 of 商家注册: 商家资料修改)."""
    return f"{_subject(title)}资料修改"


def dialog_resume_choice() -> str:
    return "请回复“继续”、“重新开始”或“取消”。"


# -- registration and the merchant account -------------------------------------------

REGISTRATION_TITLE = "商家注册"

PROMPT_ENTITY_TYPE = "第 1 步：请选择主体类型，回复“个人”或“企业”。"


def prompt_entity_name(entity_type: str) -> str:
    if entity_type == "enterprise":
        return f"第 2 步：请输入企业的注册名称（与营业执照一致），例如：{EXAMPLE_COMPANY_NAME}"
    return "第 2 步：请输入您的真实姓名（与身份证件一致），例如：张三"


#: The examples the registration prompts show; copied, they are refused (bot.validation).
EXAMPLE_COMPANY_NAME = "南宁市微拓软件服务有限公司"
EXAMPLE_CREDIT_CODE = "91350100M000100Y43"
PROMPT_CREDIT_CODE = f"第 3 步：请输入 18 位统一社会信用代码（营业执照上），例如：{EXAMPLE_CREDIT_CODE}"
PROMPT_ADULT = "第 3 步：根据协议的年龄和身份要求，请确认您已年满 18 周岁：回复“是”或“否”。"
UNDERAGE = "很抱歉，个人注册需要年满 18 周岁。感谢您对微拓的关注！您仍然可以回复“条款”阅读协议，或直接提问。"
PROMPT_CONTACT_NAME = "第 4 步：请输入联系人姓名，例如：李四"
PROMPT_PHONE = "第 5 步：请输入联系人的手机号码（中国大陆 11 位），例如：13812345678"
PROMPT_EMAIL = "第 6 步：请输入联系邮箱，例如：name@example.com；没有邮箱请回复“跳过”。"
ADULT_CONFIRMED = "已确认年满 18 周岁"

MERCHANT_STATUS_HELP = {
    "pending_review": "我们会尽快审核，审核通过后即可使用商家服务。",
    "active": "您可以使用微拓的商家服务。",
    "suspended": "账户暂停期间不能使用商家服务。",
    "closed": "账户已注销，个人资料已删除。",
}


def registered(outcome: str, status_label: str, chat: bool = True) -> str:
    """What a registration or a change of profile did; ``chat`` adds the reply
    that shows the account (the API has no replies)."""
    if outcome == "registered":
        text = f"注册信息已提交，当前状态：{status_label}。我们会尽快审核，结果会以通知告知您。"
        return text + ("回复“我的账户”随时查看。" if chat else "")
    if outcome == "resubmitted":
        return f"资料已更新。因主体信息有变化，账户需要重新审核，当前状态：{status_label}。"
    if outcome == "corrected":
        text = f"资料已修改并重新提交审核，当前状态：{status_label}。我们会尽快审核，结果会以通知告知您。"
        return text + ("回复“我的账户”随时查看。" if chat else "")
    if outcome == "unchanged":
        return f"资料与已保存的相同，无需更新，当前状态：{status_label}。" + ("回复“我的账户”查看。" if chat else "")
    return f"资料已更新，当前状态：{status_label}。" + ("回复“我的账户”查看。" if chat else "")


def already_registered(status_label: str) -> str:
    return f"您已注册微拓商家账户，当前状态：{status_label}。回复“我的账户”查看资料，回复“修改资料”修改。"


NOT_REGISTERED = "您还没有注册微拓商家账户。回复“注册”开始注册，一分钟即可完成。"
NOT_REGISTERED_FILLING = "您的注册资料还没有提交，因此还没有商家账户。请接着完成注册，回复“取消”可放弃。"
ALREADY_CLOSED = "您的微拓商家账户已经注销，无需重复操作。如需再次使用商家服务，回复“注册”重新注册。"


def status_notice(status: str, before: str, reason: str) -> tuple[str, str]:
    """The notice telling a merchant that an admin changed their account: (title, body)."""
    if status == "active" and before == "pending_review":
        return "商家账户审核通过", f"您的微拓商家账户已审核通过，现在可以使用商家服务。审核意见：{sentence(reason)}"
    if status == "active":
        return "商家账户已恢复", f"您的微拓商家账户已恢复正常，可以继续使用商家服务。说明：{sentence(reason)}"
    if status == "pending_review" and before == "suspended":
        return "商家账户已恢复", f"您的微拓商家账户已恢复，注册资料等待审核，审核通过后即可使用商家服务。说明：{sentence(reason)}"
    if status == "suspended":
        return "商家账户已暂停", (
            f"您的微拓商家账户已被暂停。原因：{sentence(reason)}\n暂停期间不能使用商家服务，您仍可以阅读协议、导出数据"
            + SUSPENDED_CHAT_HINT + "如有异议，请联系我们。"
        )
    if status == before == "pending_review":
        return "商家注册资料需要修改", (
            f"您提交的微拓商家注册资料需要修改后才能通过审核。审核意见：{sentence(reason)}\n" + RETURNED_CHAT_HINT
        )
    if status == "closed" and before == "closed":
        return "商家账户可以重新注册", (
            f"您的微拓商家账户此前在暂停期间注销，现已允许重新注册{REREGISTER_CHAT_HINT}说明：{sentence(reason)}"
        )
    if status == "closed":
        return "商家账户已注销", (
            f"您的微拓商家账户已被注销。原因：{sentence(reason)}\n商家资料已删除，同意记录依法保留；"
            "如有异议，请联系我们。"
        )
    return "商家账户状态变更", f"您的微拓商家账户状态已变更。说明：{sentence(reason)}"


def suspended(reason: str) -> str:
    return (
        f"您的商家账户已被暂停。原因：{sentence(reason)}\n"
        "暂停期间不能使用商家服务，您仍然可以：\n"
        "· 回复“条款”阅读协议；\n"
        "· 回复“导出我的数据”导出您的数据；\n"
        f"· {CONTACT}"
    )


#: 我的账户 of an account whose owner has not accepted the version in force
#: (by consent status): the services that need acceptance are stopped.
ACCOUNT_WITHOUT_CONSENT = {
    "withdrawn": "您已撤回对协议的同意，需要同意协议的商家服务已停止为您提供。回复“同意”可恢复。",
    "declined": "您未同意协议，需要同意协议的商家服务暂不能使用。回复“条款”阅读，回复“同意”同意。",
    "outdated": "协议已更新，您尚未同意新版本，需要同意协议的商家服务暂不能使用。回复“条款”查看修改，回复“同意”同意。",
    "none": "您尚未同意协议，需要同意协议的商家服务暂不能使用。回复“条款”阅读，回复“同意”同意。",
}


def account_overview(lines: list[str], status: str, status_label: str, reason: str | None,
                     barred: bool = False, consent: str = "accepted") -> str:
    """``reason``: why it is suspended, why it was returned for correction
    (pending review), or why 微拓 closed it; ``barred``: closed while suspended, so not to be
    registered again by the user; ``consent``: the owner's consent status
    (see :data:`ACCOUNT_WITHOUT_CONSENT`)."""
    text = "\n".join(["您的微拓商家账户：", *[f"· {line}" for line in lines], f"· 状态：{status_label}"])
    if status == "suspended":
        return text + "\n\n" + suspended(reason or "未说明")
    if status == "pending_review" and reason:
        text += "\n\n" + returned_for_correction(reason)
        if consent in ACCOUNT_WITHOUT_CONSENT:
            text += "\n" + ACCOUNT_WITHOUT_CONSENT[consent]
        return text + "\n回复“注销账户”注销。"
    if status in ("pending_review", "active") and consent in ACCOUNT_WITHOUT_CONSENT:
        text += "\n\n" + ACCOUNT_WITHOUT_CONSENT[consent]
        return text + "\n回复“修改资料”修改，回复“注销账户”注销。"
    text += "\n\n" + MERCHANT_STATUS_HELP[status]
    if status in ("pending_review", "active"):
        text += "\n回复“修改资料”修改，回复“注销账户”注销。"
    elif status == "closed":
        if reason:
            text += f"\n注销原因：{sentence(reason)}"
        text += "\n" + (REREGISTRATION_BARRED if barred else "回复“注册”可重新注册。")
    return text


def closed_by_us(reason: str) -> str:
    return f"您的微拓商家账户已由微拓注销，原因：{sentence(reason)}\n商家资料已删除，同意记录依法保留。如有异议：{CONTACT}"


def returned_for_correction(reason: str) -> str:
    return f"您的注册资料已被退回修改，原因：{sentence(reason)}\n请回复“修改资料”按要求修改并确认，资料将重新提交审核。"


NO_CLOSURE_ASKED = "您还没有申请注销，没有需要确认的事项。如需注销商家账户，请先回复“注销账户”。"
CLOSE_CONFIRM = (
    "注销后，您的商家资料（名称、信用代码、联系人、电话、邮箱）将被删除且无法恢复；"
    "依照法律要求，您的协议同意记录将保留。\n"
    "建议先回复“导出我的数据”保存一份数据。\n"
    "确认注销请回复“确认注销”，放弃请回复“取消”。"
)
#: Added to :data:`CLOSE_CONFIRM` for a suspended account.
CLOSE_WHILE_SUSPENDED = "注意：您的账户目前处于暂停状态，暂停期间注销后不能自行重新注册。"
CLOSE_CANCELLED = "已取消注销，您的账户保持不变。"


def close_status_changed(status_label: str) -> str:
    return f"尚未注销：在您确认之前，您的账户状态已变为“{status_label}”。请看清下面的说明后再决定。"
CLOSED = "您的商家账户已注销，商家资料已删除，协议同意记录依法保留。感谢您使用微拓！如需再次使用，回复“注册”即可。"
#: Why an account closed while suspended cannot be registered again by its user.
REREGISTRATION_BARRED = "您的商家账户在暂停期间注销，不能自行重新注册。如有疑问请联系微拓客服。"
CLOSED_BARRED = "您的商家账户已注销，商家资料已删除，协议同意记录依法保留。" + REREGISTRATION_BARRED
ALREADY_CLOSED_BARRED = "您的微拓商家账户已经注销，无需重复操作。" + REREGISTRATION_BARRED
CLOSE_CHOICE = "请回复“确认注销”或“取消”。"


# -- notices -----------------------------------------------------------------------------

IMPORTANT_STILL_ARRIVE = "标为“重要”的通知（如安全通告、条款修改通知）不受退订影响，仍会送达。"


def notice_settings(lines: list[str], important: str) -> str:
    return "\n".join(
        ["您的通知设置：", *lines, "",
         "回复“退订 类别”停止接收，例如“退订 服务公告”；回复“订阅 类别”恢复接收（“退订 全部”“订阅 全部”一次设置所有类别）。",
         IMPORTANT_STILL_ARRIVE]
    )


def unknown_category(names: list[str]) -> str:
    return f"没有这个通知类别。可选的类别：{'、'.join(names)}。"


UNKNOWN_CATEGORY_EXAMPLE = "例如：退订 服务公告"


def opted_out(name: str, mostly_important: bool = False, changed: bool = True, always_important: bool = False) -> str:
    done = f"已退订“{name}”" if changed else f"您此前已退订“{name}”"
    if always_important:  # amendment notices: none is ever sent not important
        return f"{done}，但“{name}”总是标为“重要”（协议的修改须告知每位用户），仍会送达。回复“订阅 {name}”可恢复。"
    if mostly_important:
        # Security and amendment notices are marked important unless an admin says otherwise.
        return (f"{done}，但这类通知通常标为“重要”，仍会送达；只有未标为重要的“{name}”不再发给您。"
                f"回复“订阅 {name}”可恢复。")
    return f"{done}。{IMPORTANT_STILL_ARRIVE}回复“订阅 {name}”可恢复。"


def opted_out_of_all(changed: bool) -> str:
    done = "已退订全部类别的通知" if changed else "您此前已退订全部类别的通知"
    return f"{done}。{IMPORTANT_STILL_ARRIVE}回复“订阅 全部”可全部恢复，或“订阅 类别”恢复其中一类。"


def opted_in_to_all(changed: bool) -> str:
    done = "已恢复接收全部类别的通知" if changed else "您已在接收全部类别的通知，无需重复订阅"
    return f"{done}。回复“通知设置”查看全部设置。"


def opted_in(name: str, changed: bool = True) -> str:
    done = f"已恢复接收“{name}”" if changed else f"您已在接收“{name}”，无需重复订阅"
    return f"{done}。{IMPORTANT_STILL_ARRIVE}回复“通知设置”查看全部设置。"
