"""The sentences of the agreement Q&A, in Simplified Chinese (to merge into bot/texts.py)."""

from __future__ import annotations

from bot.texts import CONTACT, HELP

#: How admins and users are told what became of a question (the question log's ``kind``).
KIND_LABELS = {"answer": "引用协议条款", "abstain": "未找到对应条款", "smalltalk": "寒暄", "form_help": "注册表单说明"}

#: The longest reply the Q&A gives, in characters.
MAX_REPLY = 600

#: Small talk in the mini-program (no chat commands to list there).
APP_SMALLTALK = {
    "greeting": "您好！我是微拓小助手，可以用协议原文回答您关于《微拓软件服务使用协议》的问题，"
    "例如“我上传的图片版权归谁？”。",
    "thanks": "不客气！还有问题随时问我。",
    "bye": "再见，有问题随时回来问我！",
}

SMALLTALK = {group: text.replace("微拓小助手", "微拓公众号小助手") + "\n\n" + HELP for group, text in APP_SMALLTALK.items()}

ELLIPSIS = "……"


def clause_name(title: str, section: int, section_title: str, ref: str) -> str:
    """``《协议》第4节《标题》第4.1款`` or ``《协议》前言第3段``."""
    if section == 0:
        return f"《{title}》前言第{ref.split('.', 1)[1]}段"
    return f"《{title}》第{section}节《{section_title}》第{ref}款"


# ``chat=False``: the mini-program's wording, without chat's commands (回复“条款 N”):
# the app shows the sections itself, from the answer's references.


def read_more(section: int) -> str:
    if section == 0:
        return "回复“条款”查看协议各节摘要。"
    return f"回复“条款 {section}”阅读全文。"


def answer(name: str, quote: str, section: int, chat: bool = True) -> str:
    text = f"根据{name}：\n“{quote}”"
    return f"{text}\n\n{read_more(section)}" if chat else text


def abstain(title: str, nearest: list[tuple[int, str]], chat: bool = True) -> str:
    """``nearest``: (section number, section title), 0 for the preamble."""
    lines = [f"抱歉，《{title}》中没有找到能回答这个问题的条款。"]
    if nearest:
        lines.append("与您的问题最接近的是：")
        for number, section_title in nearest:
            if number == 0:
                lines.append("· 协议前言（回复“条款 前言”阅读）" if chat else "· 协议前言")
            else:
                lines.append(f"· 第{number}节《{section_title}》" + (f"（回复“条款 {number}”阅读）" if chat else ""))
    elif chat:
        lines.append("回复“条款”可查看协议各节摘要。")
    lines.append(CONTACT)
    return "\n".join(lines)


def vague(title: str, chat: bool = True) -> str:
    return (
        f"请用一句话具体描述您想了解的内容，例如“我上传的图片版权归谁？”，我会从《{title}》中找到相关条款。\n"
        + ("回复“条款”可查看协议各节摘要。\n" if chat else "") + CONTACT
    )
