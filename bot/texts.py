"""Every sentence the bot says to users, in one place (Simplified Chinese)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.agreement import AgreementVersion, Section

HELP = (
    "您可以发送以下指令：\n"
    "· 帮助：查看本菜单\n"
    "· 条款：阅读《微拓软件服务使用协议》各节摘要；条款 N：阅读第 N 节全文\n"
    "· 同意 / 不同意：对当前版本的协议作出选择；撤回同意：撤回已作出的同意\n"
    "· 导出我的数据：获取我们保存的您的全部数据"
)

NOT_UNDERSTOOD = "抱歉，暂时没能理解您的意思。\n\n" + HELP

ONLY_TEXT = "目前只能处理文字消息，请用文字描述您的问题。\n\n" + HELP

INTERNAL_ERROR = "抱歉，系统开了个小差，请稍后再试。"

STORAGE_DOWN = "抱歉，系统暂时无法保存您的操作，请稍后再试。您刚才的操作未被记录。"

DIALOG_UNAVAILABLE = "对话功能暂时不可用，请稍后再试。您仍然可以直接提问。"

CONTINUED = "（未完，见下一条消息）"

CONTACT = "如需人工帮助，请访问微拓官网的联系信息页与我们联系。"


def _date(value) -> str:
    from bot.agreement import CHINA

    return value.astimezone(CHINA).strftime("%Y-%m-%d")


def consent_prompt(version: "AgreementVersion") -> str:
    return (
        f"请回复“同意”接受《{version.title}》（版本 {version.version}），或回复“不同意”。"
        "回复“条款”可先阅读各节摘要。"
    )


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
    else:
        lines.append(consent_prompt(version))
    return "\n".join(lines)


def terms_overview(current: "AgreementVersion", upcoming: "AgreementVersion | None") -> str:
    lines = [f"《{current.title}》版本 {current.version}（自 {_date(current.effective_at)} 起生效）", ""]
    lines += [f"{s.number}. {s.title}：{s.summary}" for s in current.sections]
    lines += ["", "回复“条款 N”阅读第 N 节全文，例如“条款 1”。"]
    if upcoming is not None:
        lines += [
            "",
            f"【即将生效】版本 {upcoming.version} 将于 {_date(upcoming.effective_at)} 生效。修改摘要：",
            *[f"· {line}" for line in upcoming.changes],
            f"届时我们会请您重新确认。回复“条款 {upcoming.version} N”可提前阅读新版第 N 节。",
        ]
    return "\n".join(lines)


def terms_section(version: "AgreementVersion", section: "Section") -> str:
    return f"《{version.title}》版本 {version.version}\n\n{section.full_text()}"


def no_such_section(version: "AgreementVersion", asked: str) -> str:
    return f"没有第 {asked} 节。当前版本共 {len(version.sections)} 节，请回复“条款 1”到“条款 {len(version.sections)}”。"


def no_such_version(asked: str) -> str:
    return f"没有版本为 {asked} 的协议。回复“条款”查看当前版本。"


def accepted(version: "AgreementVersion") -> str:
    return f"已记录：您同意了《{version.title}》（版本 {version.version}）。感谢您的信任！回复“撤回同意”可随时撤回。"


def already_accepted(version: "AgreementVersion") -> str:
    return f"您已同意当前版本（{version.version}），无需重复操作。回复“撤回同意”可随时撤回。"


def declined(version: "AgreementVersion") -> str:
    return (
        f"已记录：您不同意《{version.title}》（版本 {version.version}）。\n"
        "需要同意协议的服务（如商家注册、商家服务）将停止为您提供。您仍然可以：\n"
        "· 回复“条款”阅读协议；\n"
        "· 回复“导出我的数据”导出我们保存的您的数据；\n"
        f"· {CONTACT}\n"
        "如改变主意，随时回复“同意”即可。"
    )


def withdrawn(version: str) -> str:
    return (
        f"已记录：您撤回了对协议（版本 {version}）的同意。\n"
        "需要同意协议的服务将停止为您提供；您仍可阅读协议、导出数据或联系我们。随时回复“同意”可重新同意。"
    )


NOTHING_TO_WITHDRAW = "您目前没有有效的同意记录，无需撤回。回复“条款”可阅读协议。"


def reconsent(current: "AgreementVersion", previous: str) -> str:
    lines = [
        f"《{current.title}》已更新：版本 {current.version} 自 {_date(current.effective_at)} 起生效"
        f"（您此前同意的是版本 {previous}）。修改摘要：",
        *[f"· {line}" for line in current.changes],
        consent_prompt(current),
    ]
    return "\n".join(lines)


def consent_needed(version: "AgreementVersion") -> str:
    return f"此功能需要您先同意《{version.title}》（版本 {version.version}）。\n" + consent_prompt(version)


def amendment_notice(version: "AgreementVersion") -> str:
    lines = [
        f"《{version.title}》将于 {_date(version.effective_at)} 更新为版本 {version.version}。修改摘要：",
        *[f"· {line}" for line in version.changes],
        "回复“条款”查看详情。如不同意修改后的条款，您可以停止使用服务，并可先回复“导出我的数据”导出数据。",
    ]
    return "\n".join(lines)


def export_ready(summary: dict, url: str) -> str:
    return (
        f"我们保存的您的数据：同意记录 {summary['consents']} 条，当前协议状态：{summary['consent_status']}；"
        f"商家资料：{summary['merchant']}。\n"
        f"完整数据（JSON）请在 24 小时内打开以下链接下载，链接只能使用一次：\n{url}"
    )


CONSENT_STATUS = {
    "none": "尚未作出选择",
    "accepted": "已同意当前版本",
    "outdated": "同意的是旧版本，需重新确认",
    "declined": "不同意",
    "withdrawn": "已撤回同意",
}
