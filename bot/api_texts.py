"""The mini-program API's sentences for users, in Simplified Chinese.

Validation messages are not here: the API uses :mod:`bot.validation`'s,
the same the chat dialog gives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.consent import ACTION_LABELS
from bot.texts import beijing_date, beijing_when, change_summary, upcoming_consent

if TYPE_CHECKING:
    from bot.agreement import AgreementVersion, Section

LOGIN_REQUIRED = "请先登录（请求头需带 Authorization: Bearer <token>）。"
SESSION_EXPIRED = "登录已失效，请重新登录。"
CODE_INVALID = "登录凭证（code）无效，请重新调用 wx.login 获取后再试。"
CODE_USED = "登录凭证（code）已被使用，请重新调用 wx.login 获取新的凭证。"
CODE_TOO_FREQUENT = "登录过于频繁，请稍后再试。"
USER_RISKY = "微信判定该账号存在风险，暂时无法登录。"
LOGIN_UNAVAILABLE = "小程序登录暂不可用，请稍后再试。"
WECHAT_UNAVAILABLE = "暂时无法连接微信服务器，请稍后再试。"
CODE_MISSING = "请提供 wx.login 获取的登录凭证 code。"
CODE_TOO_LONG = "登录凭证 code 过长（最多 {limit} 个字符），请传入 wx.login 返回的 code 本身。"
RATE_LIMITED = "请求过于频繁，请 {seconds} 秒后再试。"
BAD_JSON = "请求体必须是 JSON 对象。"
BAD_TEXT = "请求中含有无效的字符（不成对的 Unicode 代理项），请检查后重试。"
STORAGE_UNAVAILABLE = "服务暂时不可用，请稍后再试。"
#: The same for a request that changes something: as chat says, it may have
#: been stored or not, and sending it again is safe.
STORAGE_UNAVAILABLE_WRITE = "服务暂时不可用，您的提交可能没有保存成功，请稍后重新提交（重复提交不会重复记录）。"

NOT_REGISTERED = "您还没有注册微拓商家账户。"
ALREADY_CLOSED = "您的微拓商家账户已经注销，无需重复操作；重新提交注册资料即可再次注册。"
UNDERAGE = "很抱歉，个人注册需要年满 18 周岁。"
ADULT_REQUIRED = "个人注册需要确认您已年满 18 周岁（adult 为 true）。"
ADULT_NOT_BOOL = "adult 应为 true（已年满 18 周岁）或 false。"
NOT_TEXT = "{label}应为文字。"
CLOSED = "您的商家账户已注销，商家资料已删除，协议同意记录依法保留。感谢您使用微拓！如需再次使用，重新提交注册资料即可。"


QUESTION_MISSING = "请输入问题（参数 q）。"

ACTION_UNKNOWN = "action 只能是 accept（同意）、decline（不同意）或 withdraw（撤回同意）。"
NAME_MISSING = "请填写名称：个人填写姓名，企业填写营业执照上的企业名称。"
VERSION_MISSING = "请提供要操作的协议版本号 version。"
VERSION_NOT_TEXT = "version 应为文字形式的协议版本号，例如 \"2022-05-22\"。"


def key_reused(action: str, version: str) -> str:
    """An Idempotency-Key sent again with another request."""
    done = ACTION_LABELS.get(action, action)
    return (f"这个 Idempotency-Key 已用于另一个请求（{done}版本 {version}），本次请求没有执行。"
            "每个新的操作请使用新的 Key；重试同一个操作时才沿用原来的 Key。")
DECLINE_UPCOMING = ("版本 {version} 尚未生效（将于{at}生效），生效后才能对它表示不同意；在此之前现行版本 {current} 继续有效。"
                    "如现在就不再同意现行版本，请撤回同意。")
DECLINE_OTHER_VERSION = "只能对当前生效的版本 {current} 表示不同意，不能对版本 {version}。"
WITHDRAW_OTHER_VERSION = "您同意的是版本 {accepted}，不能撤回对版本 {version} 的同意。"
SECTION_NOT_FOUND = "版本 {version} 没有第 {number} 节（共 {count} 节）。"
NOTICE_NOT_FOUND = "您的通知中没有编号为 {notice_id} 的通知。"
PREFERENCES_EMPTY = "请提供要修改的通知类别，例如：{\"preferences\": {\"service\": false}}。"
PREFERENCES_NOTE = "重要通知（如安全通告、条款修改通知）不受退订影响，始终送达。"
PREFERENCE_NOT_BOOL = "通知类别 {category} 的值应为 true（接收）或 false（退订）。"
PREFERENCE_TWICE = "通知类别 {category} 与请求中的另一个名称指同一类别，取值却相反，请只保留一个。"


def consent_required(title: str, version: str) -> str:
    return f"此功能需要您先同意《{title}》（版本 {version}）。"
NOTHING_TO_WITHDRAW = "您目前没有有效的同意记录，无需撤回。"


def for_app(body: str) -> str:
    """A notice's body as the mini-program shows it: the chat's reply hints of
    the amendment and account notices in the app's words."""
    from bot import texts

    return (body.replace(texts.AMENDMENT_CHAT_HINT,
                         "可在“服务协议”中查看详情。如不同意修改后的条款，您可以停止使用服务，并可先在“我的数据”中导出数据。")
            .replace(texts.WITHDRAWN_CHAT_HINT, "可在“服务协议”中查看现行协议。")
            .replace(texts.SUSPENDED_CHAT_HINT, "（可在“我的账户”中查看详情）。")
            .replace(texts.RETURNED_CHAT_HINT, "请在“我的账户”中按意见修改资料后重新提交，我们会重新审核。")
            .replace(texts.REREGISTER_CHAT_HINT, "：可在“我的账户”中重新提交注册资料。"))
PAGE_ARG = "{name} 应为 {low} 到 {high} 之间的整数。"
PROFILE_EXISTS = "您已有商家资料（例如刚在公众号对话中提交），为免覆盖，本次提交未保存。请重新获取资料核对，如需修改请在其基础上提交。"
PROFILE_CHANGED = "您的商家资料在您打开页面后已有变化（例如在公众号对话中修改过），为免覆盖，本次修改未保存。请重新获取资料核对后再提交。"
VERSION_MALFORMED = "version 格式不对：协议版本号以字母或数字开头，只含字母、数字、点、连字符和下划线，例如 \"2022-05-22\"。"
VERSION_TOO_LONG = "version 过长（协议版本号最多 {limit} 个字符），例如 \"2022-05-22\"。"


#: A credit code sent with an individual's registration (it was dropped unsaid).
CODE_OF_INDIVIDUAL = ("个人注册不填写统一社会信用代码：请去掉该字段；如以企业或个体工商户注册，"
                      "请选择主体类型“企业”。")

#: PUT /me/registration with an If-None-Match other than *.
IF_NONE_MATCH_STAR = "If-None-Match 只支持 *（仅在没有注册记录时注册）；修改已有记录请用 If-Match 带上其 ETag。"

#: A consent choice typed into the Q&A (同意, 我不同意 …): recorded by the app's buttons only.
CONSENT_CHOICE_NOT_RECORDED = ("问答不会记录您的选择。同意、不同意或撤回同意，请使用小程序中的对应按钮；"
                               "选择前可先阅读协议全文。")


def consent_status(status: str, current, version: str | None, at) -> str:
    """The user's own consent, asked in the Q&A ("我同意了吗"): as chat says
    it (``bot.texts.consent_status``), without chat's commands."""
    when = f"于{beijing_when(at)}" if at is not None else ""
    ask = f"您可以在小程序中阅读《{current.title}》（版本 {current.version}）后选择同意或不同意。"
    if status == "accepted":
        return (f"您已{when}同意《{current.title}》（版本 {current.version}，即现行版本）。"
                "您可随时在小程序中撤回同意，或导出您的数据查看同意记录。")
    if status == "outdated":
        return f"您{when}同意的是版本 {version}；协议已更新为版本 {current.version}，您尚未同意新版本。" + ask
    if status == "declined":
        return f"您{when}选择了不同意（版本 {version}）。" + ask
    if status == "withdrawn":
        return f"您{when}撤回了对协议的同意（版本 {version}）。" + ask
    return f"您尚未同意《{current.title}》（版本 {current.version}）。" + ask


def with_upcoming(text: str, upcoming: "list[AgreementVersion]", accepted: bool | None = None) -> str:
    """``text`` followed by the versions published to take effect later, as
    chat says it (``bot.texts.with_upcoming``), without chat's commands."""
    lines = [text]
    for version in upcoming:
        lines += ["", f"【即将生效】版本 {version.version} 将于{beijing_when(version.effective_at)}生效。修改摘要：",
                  *[f"· {line}" for line in version.changes],
                  upcoming_consent(accepted) + "可在小程序中提前阅读新版本。"]
    return "\n".join(lines)


def what_changed(current: "AgreementVersion", previous: "AgreementVersion | None",
                 upcoming: "list[AgreementVersion]", accepted: bool | None = None) -> str:
    """What the agreement's amendments changed, as chat says it (``bot.texts.what_changed``), without chat's commands."""
    date = beijing_date(current.effective_at)
    if previous is None:
        text = f"《{current.title}》自版本 {current.version}（{date} 起生效）以来没有修改过。"
    else:
        text = "\n".join([
            f"《{current.title}》最近一次修改：版本 {current.version}，自 {date} 起生效（此前为版本 {previous.version}）。",
            *(change_summary(current) if current.changes else []),
            "",
            f"可在小程序中阅读现行版本全文，并与修改前的版本 {previous.version} 对照。",
        ])
    return with_upcoming(text, upcoming, accepted)


def what_declining_does(place: str | None, sentence: str | None) -> str:
    """What follows from not agreeing, as chat says it (``bot.texts.what_declining_does``)."""
    quote = f"\n协议第{place}款：“{sentence}”" if place and sentence else ""
    return (
        "是否同意由您决定：可以选择不同意，已同意的也可随时撤回同意。\n"
        "不同意或撤回后，需要同意协议的服务（如商家注册、商家服务）将停止为您提供；"
        f"您仍然可以阅读协议、导出我们保存的您的数据（停止使用前可先导出），或联系我们。{quote}"
    )


def place_text(version: "AgreementVersion", section: "Section | None", clause: int | None) -> str:
    """A place asked for by its number (7.1, 第三节): its text, or what there is instead."""
    if section is None:
        return f"《{version.title}》没有这一节：它共有 {len(version.sections)} 节（第1节到第{len(version.sections)}节）。"
    if clause is None:
        return f"《{version.title}》版本 {version.version}\n\n{section.full_text()}"
    if not 1 <= clause <= len(section.clauses):
        return f"《{version.title}》第{section.number}节《{section.title}》共 {len(section.clauses)} 款，没有第 {clause} 款。"
    return (f"《{version.title}》版本 {version.version} 第{section.number}节《{section.title}》\n\n"
            f"{section.clause_number(clause - 1)} {section.clauses[clause - 1]}")


def preamble_text(version: "AgreementVersion") -> str:
    paragraphs = [f"{i}. {text}" for i, text in enumerate(version.preamble, start=1)]
    return f"《{version.title}》版本 {version.version} 前言\n\n" + "\n\n".join(paragraphs)
