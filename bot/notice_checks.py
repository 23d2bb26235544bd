"""What makes a notice well formed, wherever it is written (CLI, console,
amendment publishing): its text and length, the 重要 flag, the audience and
openid lists, the template configuration. The job's life is :mod:`bot.notices`.
"""

from __future__ import annotations

import json
from pathlib import Path

from bot.errors import BotError
from bot.file_problems import SHOWN_BAD_LINES
from bot.inbound import OPENID
from bot.merchants import STATUS_CHOICES, STATUSES
from storage.notices import CATEGORIES

#: Categories that are important unless the admin says otherwise.
IMPORTANT_BY_DEFAULT = ("security", "amendment")


class NoticeRefused(BotError):
    """A notice or an action on one refused: a conflict with the job's state,
    or ``invalid`` when the notice as written is malformed (its codes in
    :attr:`MALFORMED`)."""

    kind = "conflict"
    code = "notice_refused"
    MALFORMED = frozenset({"bad_category", "bad_channel", "bad_audience", "bad_important", "empty_notice",
                           "title_too_long", "body_too_long"})

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message, code)
        if self.code in self.MALFORMED:
            self.kind = "invalid"


def load_templates(path: str | None) -> dict:
    """Template ids and field mappings per category, from a JSON file::

        {"security": {"template_id": "...", "url": "https://…",
                      "fields": {"first": "{important}{title}", "keyword1": "{category}",
                                 "keyword2": "{date}", "remark": "{body}"}}}
    """
    if not path:
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("顶层应为对象：{类别: {template_id, fields}}")
    unknown = set(data) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"未知的类别 {', '.join(sorted(unknown))}，可选：{', '.join(CATEGORIES)}")
    for category, spec in data.items():
        _check_template(category, spec)
    return data


#: What a template field's pattern may name (see :func:`bot.notices.template_data`).
TEMPLATE_VALUES = ("title", "body", "category", "date", "important")


def _check_template(category: str, spec) -> None:
    """Refuse now what would fail every recipient at send time (a typo in a field's pattern)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("template_id"), str) or not spec["template_id"]:
        raise ValueError(f"{category} 需要 template_id（文字）")
    fields = spec.get("fields", {})
    if not isinstance(fields, dict):
        raise ValueError(f"{category} 的 fields 应为对象：{{模板字段: \"{{title}}\" …}}")
    sample = {name: "x" for name in TEMPLATE_VALUES}
    for field, pattern in fields.items():
        if not isinstance(pattern, str):
            raise ValueError(f"{category} 的字段 {field} 应为文字")
        try:
            pattern.format(**sample)
        except KeyError as exc:
            raise ValueError(
                f"{category} 的字段 {field} 引用了未知的值 {{{exc.args[0]}}}，可用：{', '.join('{' + v + '}' for v in TEMPLATE_VALUES)}"
            ) from None
        except (ValueError, IndexError) as exc:
            raise ValueError(f"{category} 的字段 {field} 格式有误（{pattern!r}）：{exc}") from None


#: The longest title and body a notice may have, wherever it is written.
TITLE_LIMIT = 64


BODY_LIMIT = 1500


def check_important(category: str, important: bool | None) -> bool:
    """The 重要 flag a notice of ``category`` goes with (``None``: the category's
    default); an amendment notice marked not important is refused."""
    if important is None:
        return category in IMPORTANT_BY_DEFAULT
    if not important and category == "amendment":
        # Chat promises that notices of changes to the agreement reach those who opted out.
        raise NoticeRefused("条款修改通知必须标为重要：协议的修改须告知每位用户，包括退订了通知的用户。",
                            code="bad_important")
    return important


def check_text(title: str, body: str) -> tuple[str, str]:
    """The title and body stripped; :class:`NoticeRefused` when either is empty or too long."""
    title, body = title.strip(), body.strip()
    if not title or not body:
        raise NoticeRefused("通知的标题和正文都不能为空", code="empty_notice")
    if len(title) > TITLE_LIMIT:
        raise NoticeRefused(f"标题最多 {TITLE_LIMIT} 个字，当前 {len(title)} 个字", code="title_too_long")
    if len(body) > BODY_LIMIT:
        raise NoticeRefused(
            f"正文最多 {BODY_LIMIT} 个字，当前 {len(body)} 个字（客服消息每条最多 2048 字节，超出部分会分条发送）",
            code="body_too_long",
        )
    return title, body


#: The longest text a mass send takes in one message, in UTF-8 bytes (WeChat
#: answers 45002 beyond; a mass send is not split: each is one of a few a month).
MASS_TEXT_BYTES = 2048


def check_mass_text(text: str) -> None:
    """:class:`NoticeRefused` for a notice too long to go as one mass send."""
    size = len(text.encode("utf-8"))
    if size > MASS_TEXT_BYTES:
        raise NoticeRefused(
            f"群发（--channel mass）的一条消息最多 {MASS_TEXT_BYTES} 字节（约 {MASS_TEXT_BYTES // 3} 个汉字，含标题），"
            f"当前 {size} 字节：请缩短正文，或不用群发（客服消息会自动分条）",
            code="body_too_long",
        )


def openids_from_lines(lines: list[str], source: str, commas: bool = False) -> list[str]:
    """The openids of a list as an admin wrote it, one a line (blank lines
    skipped; with ``commas`` several on a line too, as the console's box takes
    them), in order. :class:`NoticeRefused` when an entry is no openid, naming
    the first lines that hold one (counted from 1, as an editor shows them) and
    how many lines do: ``source`` says which list ("openid 文件 ids.txt")."""
    openids: list[str] = []
    bad: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        for entry in line.split(",") if commas else [line]:
            entry = entry.strip()
            if not entry:
                continue
            if OPENID.fullmatch(entry):
                openids.append(entry)
            else:
                bad.append((number, entry))
    if bad:
        shown = "、".join(f"第 {number} 行 {entry[:40]!r}" for number, entry in bad[:SHOWN_BAD_LINES])
        lines_bad = len({number for number, _ in bad})
        more = f" 等（只列出前 {SHOWN_BAD_LINES} 处）" if len(bad) > SHOWN_BAD_LINES else ""
        raise NoticeRefused(f"{source}中有 {lines_bad} 行不是有效的 openid（只能由字母、数字、- 和 _ 组成，最长 64 个字符）："
                            f"{shown}{more}。", code="bad_audience")
    return openids


def check_audience(audience: dict) -> None:
    """Raise :class:`NoticeRefused` for an audience that is not well formed."""
    kind = audience.get("type") if isinstance(audience, dict) else None
    if kind in ("all", "consented_any_version"):
        return
    if kind == "merchants":
        if "statuses" in audience and not audience["statuses"]:
            # Named but empty ("merchants:," from a script's empty variables) is no "every merchant".
            raise NoticeRefused(f"商家状态不能为空，可选：{STATUS_CHOICES}", code="bad_audience")
        bad = [str(s) for s in audience.get("statuses") or [] if s not in STATUSES]
        if bad:
            raise NoticeRefused(f"未知的商家状态：{', '.join(bad)}，可选：{STATUS_CHOICES}", code="bad_audience")
        return
    if kind == "openids":
        openids = audience.get("openids")
        if not isinstance(openids, list) or not openids or not all(isinstance(o, str) and o.strip() for o in openids):
            raise NoticeRefused("openid 列表不能为空", code="bad_audience")
        bad = [o for o in openids if not OPENID.fullmatch(o)]
        if bad:
            shown = "、".join(repr(o[:40]) for o in bad[:3]) + (f" 等 {len(bad)} 个" if len(bad) > 3 else "")
            raise NoticeRefused(f"openid 只能由字母、数字、- 和 _ 组成（最长 64 个字符）：{shown}", code="bad_audience")
        return
    raise NoticeRefused("受众必须是所有关注者（all）、曾同意协议的用户（consented）、商家（merchants，可按状态）"
                        "或指定 openid 列表（openids）", code="bad_audience")
