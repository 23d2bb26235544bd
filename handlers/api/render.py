"""The API's JSON shapes for domain objects (one place, matched by the OpenAPI document)."""

from __future__ import annotations

import datetime as dt

from bot import api_texts, texts
from bot.agreement import REASONS, AgreementVersion, Section
from bot.consent import ConsentState
from bot.inbox import InboxItem
from bot.merchants import STATUSES
from bot.notice_checks import IMPORTANT_BY_DEFAULT
from bot.terms import withdrawal_text
from storage.consents import ConsentRecord
from storage.merchants import PROFILE_FIELDS, Merchant
from storage.notices import CATEGORIES


def iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.timezone.utc).isoformat() if value else None


def section_brief(section: Section) -> dict:
    return {"number": section.number, "title": section.title, "summary": section.summary}


def section_full(section: Section) -> dict:
    return {
        **section_brief(section),
        "clauses": [{"number": section.clause_number(i), "text": c} for i, c in enumerate(section.clauses)],
    }


def version_meta(version: AgreementVersion) -> dict:
    return {
        "version": version.version,
        "title": version.title,
        "summary": list(version.summary),
        "changes": list(version.changes),
        "reason": version.reason,
        "reason_label": REASONS.get(version.reason or ""),
        "published_at": iso(version.published_at),
        "effective_at": iso(version.effective_at),
        "text_sha256": version.text_sha256,
    }


def version_brief(version: AgreementVersion) -> dict:
    return {**version_meta(version), "sections": [section_brief(s) for s in version.sections]}


def version_full(version: AgreementVersion) -> dict:
    return {
        **version_meta(version),
        "preamble": list(version.preamble),
        "sections": [section_full(s) for s in version.sections],
    }


def withdrawal(withdrawn: dict | None) -> dict | None:
    """When and why a version was withdrawn (``None``: it was not)."""
    if withdrawn is None:
        return None
    return {"at": iso(withdrawn["at"]), "reason": withdrawn["reason"], "message": withdrawal_text(withdrawn)}


def consent_record(record: ConsentRecord) -> dict:
    return record.to_export()


def consent_state(state: ConsentState, upcoming: AgreementVersion | None) -> dict:
    latest = state.latest
    return {
        "status": state.status,
        "status_label": texts.CONSENT_STATUS[state.status],
        "current_version": state.current.version,
        "accepted_version": latest.version if latest is not None and latest.action == "accept" else None,
        "upcoming_version": upcoming.version if upcoming is not None else None,
    }


def registration(merchant: Merchant, reason: str | None = None, barred: bool = False) -> dict:
    """``reason``: :meth:`~bot.merchants.MerchantAccounts.status_reason`, given as
    ``suspension_reason`` or ``returned_reason`` by the status (null otherwise);
    ``barred``: a closed account that may not register again."""
    return {
        **{field: getattr(merchant, field) for field in PROFILE_FIELDS},
        "status": merchant.status,
        "status_label": STATUSES[merchant.status],
        "suspension_reason": reason if merchant.status == "suspended" else None,
        "returned_reason": reason if merchant.status == "pending_review" else None,
        "reregistration_barred": barred and merchant.status == "closed",
        "created_at": iso(merchant.created_at),
        "updated_at": iso(merchant.updated_at),
    }


def inbox_item(item: InboxItem) -> dict:
    notice = item.notice
    return {
        "id": notice.id,
        "category": notice.category,
        "category_label": CATEGORIES.get(notice.category, notice.category),
        "title": notice.title,
        "body": api_texts.for_app(notice.body),
        "important": notice.important,
        "delivered_at": iso(item.delivered_at),
        "read": item.read,
        "read_at": iso(item.read_at),
    }


def preferences(settings: dict[str, bool]) -> dict:
    return {
        "preferences": settings,
        "categories": [
            {"category": code, "label": label, "important_by_default": code in IMPORTANT_BY_DEFAULT}
            for code, label in CATEGORIES.items()
        ],
        "note": api_texts.PREFERENCES_NOTE,
    }


def page(total: int, limit: int, offset: int) -> dict:
    """A list's paging fields: how many there are, and the next page's offset (null at the end)."""
    return {"total": total, "limit": limit, "offset": offset,
            "next_offset": offset + limit if offset + limit < total else None}
