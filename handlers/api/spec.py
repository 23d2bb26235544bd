"""The API's OpenAPI 3.1 document, served at ``/api/v1/openapi.json``.

Kept here as data beside the handlers it describes; ``tests/test_api_contract.py``
checks that every route of the URL table is in it (and nothing else), and runs
schemathesis against the served document.
"""

from __future__ import annotations

from bot.agreement import VERSION_RE
from bot.consent import STATUSES as CONSENT_STATUSES
from bot.merchants import STATUSES as MERCHANT_STATUSES
from storage.notices import CATEGORIES

PREFIX = "/api/v1"

VERSION_PATTERN = VERSION_RE.pattern
NOTICE_PATTERN = r"^[0-9A-Za-z]{1,64}$"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str] | None = None, **props) -> dict:
    schema: dict = {"type": "object", "properties": props}
    schema["required"] = list(props) if required is None else required
    return schema


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
TIME = {"type": ["string", "null"], "format": "date-time"}
NSTR = {"type": ["string", "null"]}
STRS = {"type": "array", "items": STR}
#: A string that is not blank (blank ones are refused with 422).
TEXT = {"type": "string", "pattern": r"\S"}
#: A list's paging: the query parameters and the fields beside the page's items.
PAGE_PARAMS = [
    {"name": "limit", "in": "query", "required": False, "description": "items a page, 1-100 (default 50)",
     "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
    {"name": "offset", "in": "query", "required": False, "description": "items to skip (the previous page's next_offset)",
     "schema": {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}},
]
PAGE_FIELDS = {"total": {"type": "integer", "minimum": 0}, "limit": {"type": "integer", "minimum": 1},
               "offset": {"type": "integer", "minimum": 0},
               "next_offset": {"type": ["integer", "null"], "description": "null on the last page"}}

#: Every ``error.code`` a client may meet, and what to do about it: the
#: operations list theirs by status (``codes`` of :func:`_op`).
ERROR_CODES = {
    "bad_json": "the body is not a JSON object",
    "bad_text": "text that is not valid Unicode (a lone surrogate)",
    "bad_request": "a malformed query string or header",
    "body_too_large": "the body is over 16 KiB",
    "unauthorized": "no bearer token: log in (POST /session)",
    "invalid_token": "the session ended (expired, logged out): log in again (wx.login, POST /session)",
    "invalid_code": "WeChat refused the wx.login code: call wx.login again for a new one",
    "code_used": "the wx.login code was used already: call wx.login again",
    "user_blocked": "WeChat refuses this user (a risky account): a new code would not help",
    "rate_limited": "too many requests from this user or address: wait Retry-After seconds",
    "too_frequent": "WeChat says log-ins come too often: wait Retry-After seconds",
    "login_unavailable": "WeChat's log-in did not answer: retry after Retry-After seconds",
    "wechat_unavailable": "WeChat did not answer: retry after Retry-After seconds",
    "service_unavailable": "storage briefly unavailable: retry after Retry-After seconds (a write retried is recorded once)",
    "invalid_field": "a field failed validation: error.field names it, error.errors lists every one",
    "not_found": "no such path (also a path parameter of another form: /sections/abc)",
    "method_not_allowed": "the path does not take this method (the Allow header lists those it takes)",
    "version_not_found": "no such agreement version (or it was withdrawn: the message says when and why)",
    "section_not_found": "the version has no such section",
    "notice_not_found": "no such notice in this user's inbox",
    "consent_required": "the version in force must be accepted first (POST /consents)",
    "consent_refused": "a consent action on a version it does not apply to (only the version in force is accepted or declined)",
    "nothing_to_withdraw": "no acceptance to withdraw",
    "no_account": "no merchant record: register (PUT /me/registration)",
    "already_closed": "the account is closed already",
    "account_suspended": "the account is suspended (or was closed while suspended): it cannot be changed or registered again; the message gives the reason",
    "nothing_corrected": "sent back unchanged after the reviewer returned it: change what the reviewer asked (registration.returned_reason)",
    "status_changed": "an admin changed the account meanwhile: read it again (GET /me/registration)",
    "profile_changed": "If-Match names an older record, or If-None-Match: * found one: read it again before saving",
    "account_refused": "another change the account rules refuse (the message says why)",
}
_COMMON_CODES = {400: ["bad_json", "bad_text", "bad_request"], 401: ["unauthorized", "invalid_token"],
                 413: ["body_too_large"], 429: ["rate_limited"], 503: ["service_unavailable"]}

SCHEMAS = {
    "Error": _obj(
        error=_obj(
            ["code", "message"],
            code={"type": "string",
                  "description": "stable English code; each operation's responses list theirs (x-error-codes). "
                  + "; ".join(f"{code}: {meaning}" for code, meaning in ERROR_CODES.items())},
            message={"type": "string", "description": "for the user, in Simplified Chinese"},
            field={"type": "string", "description": "the field that failed (422)"},
            errors={"type": "array", "items": _obj(field=STR, message=STR)},
        )
    ),
    "ConsentState": _obj(
        status={"enum": list(CONSENT_STATUSES)},
        status_label=STR,
        current_version=STR,
        accepted_version=NSTR,
        upcoming_version=NSTR,
    ),
    "UserState": _obj(
        openid={"type": "string", "description": "the mini-program openid"},
        linked_official_account={"type": "boolean", "description": "same person as a follower of the official account (unionid)"},
        consent=_ref("ConsentState"),
        registration={"oneOf": [{"type": "null"}, _obj(status={"enum": list(MERCHANT_STATUSES)}, status_label=STR)]},
        unread_notices={"type": "integer", "minimum": 0},
    ),
    "SectionBrief": _obj(number=INT, title=STR, summary=STR),
    "Section": _obj(number=INT, title=STR, summary=STR, clauses={"type": "array", "items": _obj(number=STR, text=STR)}),
    "VersionBrief": _obj(
        version=STR, title=STR, summary=STRS, changes=STRS, reason=NSTR, reason_label=NSTR, published_at=TIME,
        effective_at=TIME, text_sha256=STR, sections={"type": "array", "items": _ref("SectionBrief")},
    ),
    "Version": _obj(
        version=STR, title=STR, summary=STRS, changes=STRS, reason=NSTR, reason_label=NSTR, published_at=TIME,
        effective_at=TIME, text_sha256=STR, preamble=STRS, sections={"type": "array", "items": _ref("Section")},
        withdrawn={"oneOf": [{"type": "null"}, _obj(at=TIME, reason=STR, message=STR)],
                   "description": "a version withdrawn before it took effect (it never will): when, why, and the "
                   "sentence saying so; its text stays readable, as everyone was sent its amendment notice"},
    ),
    "ConsentRecord": _obj(
        version=STR, action={"enum": ["accept", "decline", "withdraw"]}, at=STR, channel=STR, text_sha256=STR,
        message_id={"type": ["string", "null"], "description": "what made the choice: from the mini-program "
                    "<mini-program openid>:<the Idempotency-Key sent with it>, in chat "
                    "msg:<official-account openid>:<MsgId>"},
    ),
    "Registration": _obj(
        entity_type={"enum": ["individual", "enterprise", None]},
        entity_name=NSTR, credit_code=NSTR, contact_name=NSTR, phone=NSTR, email=NSTR,
        status={"enum": list(MERCHANT_STATUSES), "readOnly": True},
        status_label=STR,
        suspension_reason={"type": ["string", "null"], "description": "why a suspended account is suspended (GET only)"},
        returned_reason={"type": ["string", "null"], "description": "why an account in review was returned for "
                         "correction (退回修改), until the merchant submits the form again (GET only)"},
        reregistration_barred={"type": "boolean", "description": "a closed account that may not register again "
                               "(closed while suspended: the suspension stands); false otherwise"},
        created_at=TIME, updated_at=TIME,
    ),
    "RegistrationInput": {
        "type": "object",
        "description": "The whole form (PUT replaces it). Validation and messages are the chat dialog's.",
        "properties": {
            "entity_type": {"enum": ["individual", "enterprise", "个人", "企业", "公司"],
                            "description": "individual/enterprise (个人/企业 accepted)"},
            "entity_name": STR,
            "credit_code": {"type": "string", "description": "enterprise only (GB 32100-2015); sent with an individual's, refused (422)"},
            "adult": {"type": "boolean", "description": "individuals confirm they are 18 or older: required when "
                      "registering as an individual or changing to one; a record that is already an individual's "
                      "may leave it out"},
            "contact_name": {"type": "string", "description": "an individual's 同上 or 本人 stands for entity_name, as in chat"},
            "phone": STR,
            "email": {"type": ["string", "null"], "description": "null, \"\" or a word for none (跳过, 没有, as in chat): no e-mail"},
        },
        "required": ["entity_type", "entity_name", "contact_name", "phone"],
        # Registering as an individual needs adult (the prose above: a record already an individual's may leave it out).
        "if": {"properties": {"entity_type": {"enum": ["individual", "个人"]}}, "required": ["entity_type"]},
        "then": {"required": ["adult"]},
        "example": {
            "entity_type": "enterprise", "entity_name": "南宁市示例贸易有限公司", "credit_code": "91450103MA5L2K3R0W",
            "contact_name": "王五", "phone": "13812345678", "email": "wangwu@example.com",
        },
    },
    "Notice": _obj(
        id=STR, category={"enum": list(CATEGORIES)}, category_label=STR, title=STR, body=STR, important=BOOL,
        delivered_at=TIME, read=BOOL, read_at=TIME,
    ),
    "Preferences": _obj(
        preferences={"type": "object", "additionalProperties": BOOL, "properties": {c: BOOL for c in CATEGORIES}},
        categories={"type": "array", "items": _obj(category=STR, label=STR, important_by_default=BOOL)},
        note=STR,
    ),
}
# Only on some records, so not required as _obj makes every property.
SCHEMAS["ConsentRecord"]["properties"]["copied_from"] = {
    "type": "string", "description": "on a record copied from the user's mini-program openid once they were "
    "known as a follower of the official account (the same person, by unionid): that openid"}


def _json(schema: dict, description: str = "OK", headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


_ERRORS = {
    "400": "malformed request: the body is not a JSON object, or text is not valid Unicode",
    "401": "no token, or an expired one; or (login) a code WeChat refused",
    "403": "the version in force must be accepted first",
    "404": "no such resource",
    "409": "refused by the rules (the message says why)",
    "412": "If-Match names an older version of the record, or If-None-Match: * found one: it changed since "
           "(the message says so)",
    "413": "request body larger than 16 KiB",
    "422": "a field failed validation (error.field names it)",
    "429": "too many requests (Retry-After says when to retry)",
    "503": "WeChat or storage unavailable",
}


_ETAG = {"ETag": {"schema": {"type": "string"}, "description": "the record's version, for If-Match"}}


def _errors(*codes: int) -> dict:
    out = {}
    for code in codes:
        headers = {"Retry-After": {"schema": {"type": "string"}}} if code == 429 else None
        out[str(code)] = _json(_ref("Error"), _ERRORS[str(code)], headers)
    return out


def _op(summary: str, ok: dict, *errors: int, auth: bool = True, body: dict | None = None, params=None,
        ok_status: str = "200", extra_ok: dict | None = None, described: dict | None = None,
        codes: dict | None = None) -> dict:
    """``described``: status -> what it means for this operation, where the shared words do not fit.
    ``codes``: status -> the ``error.code`` values this operation answers with it (see :data:`ERROR_CODES`)."""
    statuses = set(errors) | {400, 429, 503}
    if auth:
        statuses.add(401)
    if body is not None:
        statuses.add(413)
    op: dict = {"summary": summary, "responses": {ok_status: ok, **(extra_ok or {}), **_errors(*sorted(statuses))}}
    for status, description in (described or {}).items():
        op["responses"][str(status)] = {**op["responses"][str(status)], "description": description}
    for status in statuses:
        listed = [*_COMMON_CODES.get(status, []), *(codes or {}).get(status, [])]
        if status == 400 and body is None:
            listed = ["bad_request", "bad_text"]
        if listed:
            response = op["responses"][str(status)]
            response["description"] += "; error.code: " + ", ".join(listed)
            response["x-error-codes"] = listed
    if not auth:
        op["security"] = []
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, schema: dict) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema}


_VERSION = {**_path_param("version", {"type": "string", "pattern": VERSION_PATTERN}), "example": "2022-05-22"}

PATHS = {
    "/": {
        "get": _op("Where this contract is", _json(_obj(name=STR, version=STR, openapi=STR)), auth=False),
    },
    "/session": {
        "post": _op(
            "Log in: exchange a wx.login() code (jscode2session) for our token",
            _json(_obj(token=STR, token_type={"const": "Bearer"}, expires_in=INT, user=_ref("UserState"))),
            400, 401, 403, 422, auth=False,
            codes={401: ["invalid_code", "code_used"], 403: ["user_blocked"], 422: ["invalid_field"],
                   429: ["too_frequent"], 503: ["login_unavailable", "wechat_unavailable"]},
            body={"type": "object", "properties": {"code": {"type": "string", "minLength": 1, "maxLength": 128}}, "required": ["code"],
                  "example": {"code": "081Kq4Ga1Mh1vG0KQOGa1Kq4Ga1Kq4Gk"}},
            described={403: "WeChat refuses this user (user_blocked): a new code would not help, so no 401"},
        ),
        "delete": _op("Log out: end this token's session", {"description": "logged out"}, ok_status="204"),
    },
    "/me": {
        "get": _op("The user's state: consent, registration, unread notices", _json(_ref("UserState"))),
        "delete": {**_op(
            "Close the merchant account (personal fields erased, consent ledger kept)",
            _json(_obj(registration=_ref("Registration"), message=STR)), 404, 409,
            codes={404: ["no_account"], 409: ["already_closed", "status_changed"]},
        ), "description": "Closes at once: the app asks the user to confirm first, and offers GET /me/export "
            "before it (chat's 注销账户 asks 确认注销 and offers 导出我的数据 in its own words). Closed while "
            "suspended, the account cannot be registered again by its user (reregistration_barred)."},
    },
    "/terms": {
        "get": _op(
            "The version in force and the upcoming ones (upcoming: the next; upcoming_all: every one scheduled), with summaries",
            _json(_obj(
                current=_ref("VersionBrief"),
                upcoming={"oneOf": [{"type": "null"}, _ref("VersionBrief")]},
                upcoming_all={"type": "array", "items": _ref("VersionBrief")},
                versions={"type": "array", "items": _obj(version=STR, effective_at=TIME)},
            )),
            auth=False,
        )
    },
    "/terms/{version}": {
        "get": _op("One version in full (ETag; If-None-Match answers 304 when unchanged)", _json(_ref("Version")), 404,
                   auth=False, params=[_VERSION], codes={404: ["version_not_found", "not_found"]},
                   extra_ok={"304": {"description": "not modified (If-None-Match named its ETag)"}})
    },
    "/terms/{version}/sections/{n}": {
        "get": _op(
            "One section of one version", _json(_obj(version=STR, section=_ref("Section"))), 404, auth=False,
            codes={404: ["version_not_found", "section_not_found", "not_found"]},
            params=[_VERSION, {**_path_param("n", {"type": "integer", "minimum": 1, "maximum": 999}), "example": 1}],
        )
    },
    "/consents": {
        "post": _op(
            "Accept, decline or withdraw one exact version",
            _json(_obj(recorded=BOOL, consent=_ref("ConsentState"))), 400, 404, 409, 422,
            codes={404: ["version_not_found"], 409: ["consent_refused", "nothing_to_withdraw"], 422: ["invalid_field"]},
            body={
                "type": "object",
                "properties": {"version": {"type": "string", "pattern": VERSION_PATTERN},
                               "action": {"enum": ["accept", "decline", "withdraw"]}},
                "required": ["version", "action"],
                "example": {"version": "2022-05-22", "action": "accept"},
            },
            params=[{"name": "Idempotency-Key", "in": "header", "required": False,
                     "description": "A retry with the same key records once (recorded: false); the key sent "
                                    "with another version or action is refused (422, field Idempotency-Key).",
                     "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_.:-]{8,64}$"}}],
        )
    },
    "/me/consents": {
        "get": _op(
            "Consent state and the user's ledger records, oldest first, a page at a time",
            _json(_obj(consent=_ref("ConsentState"), history={"type": "array", "items": _ref("ConsentRecord")},
                       **PAGE_FIELDS)), 422, params=PAGE_PARAMS, codes={422: ["invalid_field"]},
        )
    },
    "/me/registration": {
        "get": _op("The merchant record (its ETag: send it back as If-Match when changing it)",
                   _json(_obj(registration=_ref("Registration")), headers=_ETAG), 404, codes={404: ["no_account"]}),
        "put": _op(
            "Register, or change the profile (same rules as the chat dialog). With If-Match (the ETag of the "
            "record the form was filled from), a record changed since, in chat say, is not overwritten (412); "
            "with If-None-Match: * (a first registration, the app having found no record, or a closed one: "
            "registering again), a record made meanwhile, in chat say, is not overwritten either (412); "
            "If-None-Match with any other value is refused (400)",
            _json(_obj(registration=_ref("Registration"), outcome={"enum": ["updated", "unchanged", "resubmitted"],
                                                               "description": "unchanged: the same as stored, nothing "
                                                               "written (the ETag stays; a retry of a saved request "
                                                               "answers so too)"}, message=STR),
                  headers=_ETAG),
            400, 403, 409, 412, 422, body=_ref("RegistrationInput"),
            codes={403: ["consent_required"], 409: ["account_suspended", "nothing_corrected", "status_changed", "account_refused"],
                   412: ["profile_changed"], 422: ["invalid_field"]},
            params=[{"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}},
                    {"name": "If-None-Match", "in": "header", "required": False, "schema": {"const": "*"},
                     "description": "only * (RFC 9110: create only); any other value is refused (400)"}],
            extra_ok={"201": _json(_obj(registration=_ref("Registration"), outcome={"const": "registered"}, message=STR),
                                   "registered", headers=_ETAG)},
        ),
    },
    "/me/notices": {
        "get": _op(
            "The inbox: notices delivered to the user, newest first, a page at a time",
            _json(_obj(notices={"type": "array", "items": _ref("Notice")}, unread={"type": "integer", "minimum": 0},
                       **PAGE_FIELDS)), 422, params=PAGE_PARAMS, codes={422: ["invalid_field"]},
        )
    },
    "/me/notices/{id}/read": {
        "post": _op(
            "Mark a notice read", _json(_obj(notice=_ref("Notice"))), 404, codes={404: ["notice_not_found", "not_found"]},
            params=[_path_param("id", {"type": "string", "pattern": NOTICE_PATTERN})],
        )
    },
    "/me/preferences": {
        "get": _op("Notice categories on or off", _json(_ref("Preferences"))),
        "put": _op(
            "Turn categories on or off (important notices always arrive)", _json(_ref("Preferences")), 400, 422,
            codes={422: ["invalid_field"]},
            body={**_obj(preferences={"type": "object", "additionalProperties": BOOL, "minProperties": 1,
                                      "propertyNames": {"enum": [*CATEGORIES, *CATEGORIES.values()]},
                                      "description": "category code or its Chinese name -> on/off; a "
                                      "category named twice (other and 其他) is refused (422)"}),
                  "example": {"preferences": {"service": False}}},
        ),
    },
    "/qa": {
        "get": _op(
            "Ask a question about the agreement",
            _json(_obj(
                question=STR, kind={"enum": ["answer", "abstain", "smalltalk", "consent_status", "declining", "consent_choice",
                                             "place", "changes"],
                                    "description": "consent_status: the user asked about their own consent "
                                    "(我同意了吗, 同意状态), answered from their record; declining: what follows "
                                    "from not agreeing, quoting the agreement's sentence on it (its place in refs); consent_choice: a "
                                    "choice typed as a question (同意, 我不同意), which only POST /consents records; place: "
                                    "a place in the agreement asked for (7.1, 条款 4.1, 第三节, 前言), its text quoted "
                                    "(refs empty when the agreement has no such place); changes: what the amendments changed "
                                    "(协议最近改了什么), from the published versions: the version in force's change summary "
                                    "and the one it replaced, or that the agreement was never changed; then any to come"},
                text={**STR, "description": "the quoted clause, the abstention with the nearest sections, or the "
                      "answer from the user's record (consent_status, declining) or the published versions (changes), worded for the mini-program: "
                      "no chat commands"}, refs=STRS,
                references={"type": "array", "items": _obj(
                    ref=STR, kind={"enum": ["clause", "section", "preamble"]},
                    section={"type": ["integer", "null"]}, section_title=NSTR,
                )},
                version=STR,
            )),
            422, codes={422: ["invalid_field"]},
            params=[{"name": "q", "in": "query", "required": True, "schema": {**TEXT, "maxLength": 200}}],
        )
    },
    "/me/export": {
        "get": _op("Everything held about the user (JSON)", _json({
            "type": "object", "required": ["openid", "consents"],
            "properties": {
                "openid": STR, "exported_at": TIME,
                "follower": {"type": ["object", "null"], "description": "as a follower of the official account"},
                "consent_status": {"type": "object"},
                "consents": {"type": "array", "description": "every consent ledger record"},
                "merchant": {"type": ["object", "null"], "description": "the merchant record and its status history"},
                "preferences": {"type": "object", "description": "category -> \"on\" or \"off\" (as the "
                                "chat export words it; /me/preferences answers booleans)"},
                "deliveries": {"type": "array", "description": "notices sent or skipped: notice, category, status, "
                               "channel, at, errcode"},
                "miniprogram_logins": {"type": "array"}, "notice_reads": {"type": "array"},
                "questions": {"type": "array", "description": "questions asked about the agreement"},
                "dialog_drafts": {"type": "array", "description": "forms left unfinished in chat"},
            },
        }))
    },
    "/openapi.json": {
        "get": _op("This document", _json({"type": "object"}), auth=False)
    },
}


def document(server_url: str | None = None) -> dict:
    """The OpenAPI 3.1 document; ``server_url`` is where this service answers."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "微拓 WETOOP mini-program API",
            "version": "1.0.0",
            "description": (
                "The backend of the WETOOP mini-program: log in, read and consent to the service agreement, "
                "register as a merchant, notices, preferences, Q&A, export and closure. Errors are "
                '{"error": {"code", "message"}}; messages are for users, in Simplified Chinese.'
            ),
        },
        "servers": [{"url": (server_url or "").rstrip("/") + PREFIX}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "the token from POST /session"}},
        },
    }
