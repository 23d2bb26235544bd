"""What a user does with their own account outside chat (the mini-program API):
the registration as one form, closure, and consent naming the exact version.

The rules are the chat dialog's: the same validators and messages
(:mod:`bot.validation`), acceptance of the version in force first (as
:func:`bot.gate.require_consent`), individuals confirm they are 18 or older,
and :class:`bot.merchants.MerchantAccounts` decides what a change does.
Closing is the chat's 注销账户 without the typed confirmation (the
mini-program asks in its own UI).
"""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

from bot import api_texts, texts
from bot.agreement import VERSION_MAX, VERSION_RE
from bot.consent import ConsentRefused, Consents, ConsentState, Origin, acceptance_to_withdraw
from bot.errors import BotError
from bot.merchants import FIELD_LABELS, AlreadyClosed, NoAccount, holds, profile_stamp
from bot.registration import REGISTRATION, means_no_email
from bot.serial import one_at_a_time
from bot.services import Services
from bot.terms import VersionNotFound
from bot.validation import (
    Invalid,
    parse_contact_name,
    parse_credit_code,
    parse_email,
    parse_entity_name,
    parse_entity_type,
    parse_phone,
)
from storage.merchants import Merchant
from storage.redis_store import RedisUnavailable


class ConsentRequired(BotError):
    kind = "forbidden"
    code = "consent_required"


class InvalidFields(Invalid):
    """Several fields failed; ``field``/``message`` are the first, ``errors`` all of them."""

    def __init__(self, errors: list[Invalid]) -> None:
        super().__init__(errors[0].message, errors[0].field)
        self.errors = [{"field": e.field, "message": e.message} for e in errors]


def parse_profile(body: dict, existing: Merchant | None) -> dict:
    """The profile to save from a JSON form; :class:`InvalidFields` names every bad field.

    ``status`` and unknown keys are ignored (read-only or not ours). An
    individual confirms ``adult`` when registering or becoming one.
    """
    errors: list[Invalid] = []

    def field(name: str, parse, optional: bool = False):
        value = body.get(name)
        if optional and value in (None, ""):
            return ""
        if not isinstance(value, str):  # the contract's type: 13812345678 as a number is refused, not guessed at
            if value is not None:
                errors.append(Invalid(api_texts.NOT_TEXT.format(label=FIELD_LABELS[name]), name))
                return None
            value = ""
        try:
            return parse(value)
        except Invalid as exc:
            errors.append(Invalid(exc.message, name))
            return None

    profile: dict = {"entity_type": field("entity_type", parse_entity_type)}
    entity_type = profile["entity_type"]
    if entity_type is not None:
        profile["entity_name"] = field("entity_name", lambda text: parse_entity_name(text, entity_type))
    elif not isinstance(body.get("entity_name"), str) or not body["entity_name"].strip():
        # Its rules depend on the type; that it is missing does not (else said only after the type is mended).
        errors.append(Invalid(api_texts.NAME_MISSING, "entity_name"))
    if entity_type == "enterprise":
        profile["credit_code"] = field("credit_code", parse_credit_code)
    if entity_type == "individual":
        _check_adult(body.get("adult"), existing, errors)
        if isinstance(body.get("credit_code"), str) and body["credit_code"].strip():  # was dropped without a word
            errors.append(Invalid(api_texts.CODE_OF_INDIVIDUAL, "credit_code"))
    # As chat takes them (one rule for both): an individual's 同上 / 本人 names
    # the registrant, and 跳过 / 没有 leaves the e-mail out.
    registrant = profile.get("entity_name") if entity_type == "individual" else None
    profile["contact_name"] = field("contact_name", lambda text: parse_contact_name(text, registrant))
    profile["phone"] = field("phone", parse_phone)
    profile["email"] = field("email", lambda text: "" if means_no_email(text) else parse_email(text), optional=True)
    if errors:
        raise InvalidFields(errors)
    return profile


def _check_adult(value, existing: Merchant | None, errors: list[Invalid]) -> None:
    confirmed_before = existing is not None and existing.status != "closed" and existing.entity_type == "individual"
    if value is None and confirmed_before:
        return
    if value is not None and not isinstance(value, bool):
        errors.append(Invalid(api_texts.ADULT_NOT_BOOL, "adult"))
        return
    if value is True:
        return
    if value is False:
        errors.append(Invalid(api_texts.UNDERAGE, "adult"))  # chat's says 回复“条款”
    else:
        errors.append(Invalid(api_texts.ADULT_REQUIRED, "adult"))


@contextlib.asynccontextmanager
async def as_person(services: Services, openid: str) -> AsyncIterator[str]:
    """Hold the person's lock, as chat's messages hold it; yields the openid
    their records are under now.

    A request names the openid its token stood for when it arrived. A
    mini-program user who joined their follower since (the join holds the
    mini-program openid's lock while it moves the records) is the follower by
    the time the lock is had: their change goes there, not to records just moved.
    """
    for _ in range(3):  # a join happens once; a third round would be a cycle
        async with one_at_a_time(services.locks, openid):
            joined = await services.mini.joined(openid) if services.mini is not None else None
            if joined is None:
                yield openid
                return
        openid = joined
    raise RuntimeError(f"no stable openid for {openid}")


async def set_preferences(services: Services, openid: str, changes: dict[str, bool]) -> dict[str, bool]:
    """Turn categories on or off (the API's PUT); every category's setting after."""
    async with as_person(services, openid) as openid:
        await services.preferences.replace(openid, changes)
        return await services.preferences.settings(openid)


class ChangedSince(BotError):
    """The record changed since the version the client names (``If-Match``)."""

    kind = "precondition_failed"
    code = "profile_changed"


async def save_registration(services: Services, openid: str, body: dict,
                            seen: list[str] | None = None, create_only: bool = False) -> tuple[Merchant, str]:
    """Register or change the profile: ``(record, "registered"|"updated"|"unchanged"|"resubmitted")``.

    ``seen``: the :func:`~bot.merchants.profile_stamp` values of the record the client
    may have shown (its ETag); a record changed since (in chat, say) is not
    overwritten. With no record yet there is nothing to overwrite. ``create_only``:
    the client found no record; one made since (a registration in chat) is not overwritten.
    Raises :class:`ConsentRequired`, :class:`InvalidFields`,
    :class:`ChangedSince` or :class:`~bot.merchants.AccountRefused`
    (e.g. suspended).
    """
    async with as_person(services, openid) as openid:
        state = await services.consents.fresh_state(openid)  # as chat's consent gate reads it
        if not state.accepted:
            raise ConsentRequired(api_texts.consent_required(state.current.title, state.current.version))
        existing = await services.merchants.get(openid)
        profile = parse_profile(body, existing)
        # The record as this request would make it overwrites nothing: a retry of a
        # request that was saved (its reply lost) is answered, not refused as a change.
        same = (existing is not None and existing.status != "closed"
                and holds(existing, profile))
        if seen is not None and existing is not None and profile_stamp(existing) not in seen and not same:
            raise ChangedSince(api_texts.PROFILE_CHANGED)
        if create_only and existing is not None and existing.status != "closed" and not same:
            raise ChangedSince(api_texts.PROFILE_EXISTS)
        return await services.merchants.save_profile(openid, profile)


async def registration(services: Services, openid: str) -> Merchant:
    """The user's merchant record; :class:`~bot.merchants.NoAccount` if none."""
    merchant = await services.merchants.get(openid)
    if merchant is None:
        raise NoAccount(api_texts.NOT_REGISTERED)
    return merchant


async def close(services: Services, openid: str, via: str = "小程序") -> Merchant:
    """Close the account as chat's 注销账户 does: personal fields erased, ledger kept."""
    async with as_person(services, openid) as openid:
        merchant = await services.merchants.get(openid)
        if merchant is None:
            raise NoAccount(api_texts.NOT_REGISTERED)
        if merchant.status == "closed":
            barred = await services.merchants.barred_from_registering(openid)
            raise AlreadyClosed(texts.ALREADY_CLOSED_BARRED if barred else api_texts.ALREADY_CLOSED)
        closed = await services.merchants.set_status(openid, "closed", f"用户在{via}申请注销", by="user")
        await forget_registration_dialog(services, openid)
        return closed


async def forget_registration_dialog(services: Services, openid: str) -> None:
    """After a closure: a registration dialog still open in chat (its answers,
    credit code and all) must neither outlive the account nor register it again."""
    state = await services.dialogs.load(openid)
    if state is not None and state.name.startswith(f"{REGISTRATION.name}:"):
        await services.dialogs.clear(openid)
    await services.dialogs.clear_draft(openid, REGISTRATION.name)


# -- consent ------------------------------------------------------------------------

CONSENT_ACTIONS = ("accept", "decline", "withdraw")


async def record_consent(
    services: Services, openid: str, version: object, action: object, origin: Origin
) -> tuple[ConsentState, bool]:
    """Accept, decline or withdraw, naming the exact version: ``(state, recorded)``.

    A version not published (or withdrawn) raises VersionNotFound, whatever
    the action. Accepting anything but the version in force is refused with
    the reason (:meth:`bot.consent.Consents.accept`); declining names the
    version in force, withdrawing the version accepted.
    """
    if action not in CONSENT_ACTIONS:
        raise Invalid(api_texts.ACTION_UNKNOWN, "action")
    if version is not None and not isinstance(version, str):
        raise Invalid(api_texts.VERSION_NOT_TEXT, "version")
    if not isinstance(version, str) or not version.strip():
        raise Invalid(api_texts.VERSION_MISSING, "version")
    version = version.strip()
    if len(version) > VERSION_MAX:  # no version is that long; the refusal would quote it whole
        raise Invalid(api_texts.VERSION_TOO_LONG.format(limit=VERSION_MAX), "version")
    if not VERSION_RE.fullmatch(version):  # no version has such characters (a NUL would be quoted back)
        raise Invalid(api_texts.VERSION_MALFORMED, "version")
    with contextlib.suppress(VersionNotFound):  # the id as published: chat and GET /terms/{v} take any case
        version = (await services.terms.get(version)).version
    # One consent action of a person at a time, chat's included (else a 同意
    # in chat and an accept here both read "not accepted" and both append).
    async with as_person(services, openid) as openid:
        if origin.message_id:
            earlier = await services.consents.ledger.of_message(origin.channel, origin.message_id)
            if earlier is not None and (earlier.action, earlier.version) != (action, version):
                # A retry repeats its request; another request under its key
                # would be answered "recorded: false" and silently dropped.
                raise Invalid(api_texts.key_reused(earlier.action, earlier.version), "Idempotency-Key")
            if earlier is not None:
                # A retry of a request that was recorded (its reply lost): recorded once.
                # Checked again, a withdrawal's retry found nothing left to withdraw (409).
                return await services.consents.fresh_state(openid), False
            asked = await _key_without_record(services, origin)
            if asked is not None:
                if asked != (action, version):
                    raise Invalid(api_texts.key_reused(*asked), "Idempotency-Key")
                # A retry of a request that changed nothing changes nothing either
                # (it put back an acceptance withdrawn since in chat).
                return await services.consents.fresh_state(openid), False
        state, recorded = await _record_consent(services.consents, openid, version, action, origin)
        if origin.message_id and not recorded and services.consent_keys is not None:
            with contextlib.suppress(RedisUnavailable):
                await services.consent_keys.remember(origin.channel, origin.message_id, action, version)
        return state, recorded


async def _key_without_record(services: Services, origin: Origin) -> tuple[str, str] | None:
    """What an earlier request under ``origin``'s key asked, if it recorded nothing."""
    if services.consent_keys is None:
        return None
    try:
        return await services.consent_keys.get(origin.channel, origin.message_id)
    except RedisUnavailable:
        return None


async def _record_consent(
    consents: Consents, openid: str, version: str, action: str, origin: Origin
) -> tuple[ConsentState, bool]:
    # The version named is checked against the versions as stored now, not
    # the cache (a version another process made effective a moment ago).
    state = await consents.fresh_state(openid)
    if version != state.current.version:
        # A version never published, or withdrawn before it took effect, is not
        # there to choose: VersionNotFound (404, as GET /terms/{v}; a withdrawn
        # one's message says when), not a conflict with the user's choices.
        await consents.terms.get(version)
    if action == "accept":
        return await consents.accept(openid, origin, version=version, state=state)
    if action == "decline":
        upcoming = [v for v in await consents.terms.pending() if v.version == version]
        if upcoming:
            # Not yet in force: the version accepted holds until then (chat's 不同意 says the same).
            raise ConsentRefused(api_texts.DECLINE_UPCOMING.format(
                version=version, at=texts.beijing_when(upcoming[0].effective_at), current=state.current.version))
        if version != state.current.version:
            raise ConsentRefused(api_texts.DECLINE_OTHER_VERSION.format(current=state.current.version, version=version))
        return await consents.decline(openid, origin, state=state)
    accepted = acceptance_to_withdraw(state.latest)
    if accepted is None:
        raise ConsentRefused(api_texts.NOTHING_TO_WITHDRAW, code="nothing_to_withdraw")  # chat's names 条款
    if accepted.version != version:
        raise ConsentRefused(
            api_texts.WITHDRAW_OTHER_VERSION.format(accepted=accepted.version, version=version),
            code="nothing_to_withdraw",
        )
    new_state, _withdrawn = await consents.withdraw(openid, origin, state=state)
    return new_state, True
