"""Mini-program login, API sessions, the person behind them, and rate limits.

Login exchanges a ``wx.login()`` code through WeChat's ``jscode2session`` and
hands out our own token: opaque, random, expiring, kept in Redis (as a
hash). WeChat's ``session_key`` stays in the session on the server.

One person, one record: when WeChat gives a unionid and an official-account
follower is known with it, the API acts as that follower's openid (the
*subject*), so consent, registration, notices and preferences are shared with
the chat. Otherwise the subject is the mini-program openid.

The official account learns a follower's unionid from ``user/info`` when they
follow (:meth:`MiniSessions.learn_follower`). A mini-program user who came
first then becomes the follower: their sessions act as the follower from the
next request on, and what they did before (consent, registration,
preferences, notices, questions) moves to the follower's openid
(:mod:`storage.openid_moves`), so chat sees it. Only when both openids hold a
merchant record (registered on each side) do the two stay apart, logged: which
account to keep is an admin's decision.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import secrets
import time
from typing import Callable

import pymongo

from bot import api_texts
from bot.errors import BotError
from bot.serial import Busy, one_at_a_time
from storage.api_sessions import ApiSessions, RequestCounters
from storage.followers import Followers
from storage.identities import Identities, MiniProgramUser
from storage.locks import UserLocks
from storage.mongo import MongoUnavailable
from storage.openid_moves import OpenidMoves
from wechat.api import WeChatAPIError

log = logging.getLogger(__name__)

#: A token works this long; the mini-program then logs in again (wx.login is silent).
SESSION_TTL = 7 * 24 * 3600
#: Longest ``code`` accepted before asking WeChat.
MAX_CODE_LENGTH = 128
#: How long following waits for ``user/info`` (the welcome must not wait long).
LEARN_TIMEOUT = 1.5
#: Minutes a unionid not asked at the follow (storage down) is asked again, at most.
LEARN_TRIES = 60
#: How long following waits for a busy mini-program user's lock before leaving the join to the upkeep.
FOLLOW_LOCK_WAIT = 0.3
#: Seconds a request waits to learn whether its user was linked to a follower
#: since the session began (a read by key: milliseconds when the database is well).
LINK_CHECK_SECONDS = 0.3


class Unauthorized(BotError):
    kind = "unauthenticated"
    code = "unauthorized"


class LoginFailed(BotError):
    kind = "unauthenticated"
    code = "invalid_code"


class LoginRefused(BotError):
    """WeChat refuses this user (40226, a risky account): a new code would not help,
    so not 401, which a mini-program answers by logging in again, for ever."""

    kind = "forbidden"
    code = "user_blocked"


class RateLimited(BotError):
    kind = "too_many"
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


class LoginUnavailable(BotError):
    kind = "unavailable"
    code = "login_unavailable"


#: WeChat's jscode2session errors -> what the API answers.
_LOGIN_ERRORS: dict[int, tuple[type[BotError], str, str]] = {
    40029: (LoginFailed, "invalid_code", api_texts.CODE_INVALID),
    41008: (LoginFailed, "invalid_code", api_texts.CODE_INVALID),  # "missing code": the app's, not our credentials
    40163: (LoginFailed, "code_used", api_texts.CODE_USED),
    40226: (LoginRefused, "user_blocked", api_texts.USER_RISKY),
}


@dataclasses.dataclass(frozen=True)
class Limits:
    """Requests per minute: per user over the whole API, per client address for login."""

    per_user: int = 120
    login_per_address: int = 30


@dataclasses.dataclass(frozen=True)
class ApiUser:
    """Who an API request is from. ``openid`` is the subject the domain uses."""

    openid: str
    miniprogram_openid: str
    unionid: str | None

    @property
    def linked(self) -> bool:
        """True when the subject is an official-account follower (same unionid)."""
        return self.openid != self.miniprogram_openid


@dataclasses.dataclass(frozen=True)
class Login:
    token: str
    expires_in: int
    user: ApiUser


class MiniSessions:
    """Login, token checks, logout, rate limits (see module docstring)."""

    def __init__(
        self,
        wechat,  # wechat.miniprogram.MiniProgramAPI | None
        sessions: ApiSessions,
        identities: Identities,
        followers: Followers,
        counters: RequestCounters,
        clock: Callable[[], dt.datetime],
        ttl: int = SESSION_TTL,
        limits: Limits = Limits(),
        official=None,  # wechat.api.WeChatAPI | None: the official account's client
        records: OpenidMoves | None = None,
        locks: UserLocks | None = None,
    ) -> None:
        self.wechat = wechat
        self.sessions = sessions
        self.identities = identities
        self.followers = followers
        self.counters = counters
        self.ttl = ttl
        self.limits = limits
        self.official = official
        self._records = records
        self._locks = locks
        self._clock = clock
        #: follower openid -> unionid learned while MongoDB was down: linked by
        #: :meth:`finish_joins` once it is back (else only a backfill would).
        self._unlinked: dict[str, str] = {}
        #: followers whose unionid was not asked at their follow (storage was
        #: down: the welcome could not spare the time): asked by :meth:`finish_joins`.
        self._to_learn: dict[str, int] = {}  # -> tries left

    async def login(self, code: str, mongo_budget: float | None = None) -> Login:
        """Exchange ``code`` and start a session; raises :class:`LoginFailed`,
        :class:`RateLimited` (WeChat's 45011) or :class:`LoginUnavailable`.
        ``mongo_budget``: seconds the MongoDB calls after WeChat's answer may take."""
        if self.wechat is None:
            raise LoginUnavailable(api_texts.LOGIN_UNAVAILABLE)
        try:
            wx = await self.wechat.code_to_session(code)
        except WeChatAPIError as exc:
            raise _login_error(exc) from None
        with pymongo.timeout(mongo_budget):
            user = await self._identify(wx.openid, wx.unionid)
        token = secrets.token_urlsafe(32)
        await self.sessions.create(
            token,
            {
                "openid": user.openid,
                "miniprogram_openid": user.miniprogram_openid,
                "unionid": user.unionid,
                "session_key": wx.session_key,
                "created_at": self._clock().isoformat(),
            },
            self.ttl,
        )
        return Login(token, self.ttl, user)

    async def _identify(self, mp_openid: str, unionid: str | None) -> ApiUser:
        now = self._clock()
        known = await self.identities.get(mp_openid)
        if known is None:
            follower = await self.followers.with_unionid(unionid) if unionid else None
            subject = follower.openid if follower is not None else mp_openid
            if await self.identities.create(mp_openid, subject, unionid, now):
                return ApiUser(subject, mp_openid, unionid)
            known = await self.identities.get(mp_openid)  # a concurrent first login won
            assert known is not None
        else:
            await self.identities.logged_in(mp_openid, unionid, now)
            unionid = unionid or known.unionid
            if known.subject == mp_openid and unionid:
                # A follower learnt since (or a move cut short): join them now.
                follower = await self.followers.with_unionid(unionid)
                if follower is not None:
                    try:
                        await self.link_follower(follower.openid, unionid)
                    except Exception:  # noqa: BLE001 - the log-in must not fail for it: the next try joins them
                        log.warning("could not join %s to follower %s now", mp_openid, follower.openid, exc_info=True)
                    known = await self.identities.get(mp_openid) or known
        return ApiUser(known.subject, mp_openid, unionid or known.unionid)

    async def authenticate(self, token: str | None) -> ApiUser:
        """The user behind a bearer token; :class:`Unauthorized` otherwise."""
        if not token:
            raise Unauthorized(api_texts.LOGIN_REQUIRED)
        session = await self.sessions.get(token) if len(token) <= 256 else None
        if session is None:
            raise Unauthorized(api_texts.SESSION_EXPIRED, code="invalid_token")
        user = ApiUser(session["openid"], session["miniprogram_openid"], session.get("unionid"))
        if not user.linked and user.unionid:
            # The follower may have been linked since this session began. Asked
            # briefly: with the database slow or down the session's own openid
            # serves (a request that needs the database says so itself).
            try:
                with pymongo.timeout(LINK_CHECK_SECONDS):
                    known = await self.identities.get(user.miniprogram_openid)
            except MongoUnavailable as exc:
                log.warning("link of %s not checked: %s", user.miniprogram_openid, exc)
                known = None
            if known is not None and known.subject != user.openid:
                user = dataclasses.replace(user, openid=known.subject)
        return user

    async def logout(self, token: str) -> None:
        await self.sessions.delete(token)

    async def check_rate(self, who: str, per_minute: int) -> None:
        """Count a request of ``who``; :class:`RateLimited` beyond ``per_minute``."""
        now = time.time()
        window = int(now // 60)
        if await self.counters.hit(who, window, 60) > per_minute:
            retry = max(1, int((window + 1) * 60 - now) + 1)
            raise RateLimited(api_texts.RATE_LIMITED.format(seconds=retry), retry)

    async def link_follower(self, follower_openid: str, unionid: str, wait: float | None = None) -> int:
        """Record that the follower ``follower_openid`` has ``unionid``: mini-program
        users with it become that follower, their records moved to the
        follower's openid; not when both hold a merchant record. Returns how
        many stay apart for that reason.

        The caller holds the follower's lock or none (chat's follow holds it);
        each mini-program user's is taken here, as the API's writes take it
        (:func:`bot.my_account.as_person`), so none is written meanwhile.
        """
        await self.followers.set_unionid(follower_openid, unionid)
        apart = 0
        for user in await self.identities.with_unionid(unionid):
            if user.subject != user.openid:
                continue  # already someone's
            try:
                async with one_at_a_time(self._locks, user.openid, wait=wait):
                    now = await self.identities.get(user.openid)  # as it is under the lock
                    if now is not None and now.subject == now.openid and not await self._join(now, follower_openid):
                        apart += 1
            except Busy:  # one of their requests holds it: the upkeep joins them within a minute
                await self.identities.want_link(user.openid, follower_openid)
                log.info("mini-program user %s busy; joining follower %s later", user.openid, follower_openid)
        return apart

    async def _join(self, user: MiniProgramUser, follower_openid: str) -> bool:
        """Make ``user`` the follower, moving their records; ``False`` if both
        hold a merchant record (neither can be taken over the other)."""
        records = self._records
        if records is not None:
            if user.joining != follower_openid:
                if await records.both_registered(user.openid, follower_openid):
                    log.warning("mini-program user %s and follower %s both hold a merchant record; kept apart",
                                user.openid, follower_openid)
                    return False
                # Marked first: a move cut short is then finished, not refused
                # (the follower holds part of it by then).
                await self.identities.start_joining(user.openid, follower_openid)
            moved = await records.move(user.openid, follower_openid, self._clock())
            log.info("mini-program user %s joined follower %s: %s", user.openid, follower_openid, moved)
        await self.identities.repoint(user.openid, follower_openid, expected=user.openid)
        return True

    def learn_later(self, follower_openid: str) -> None:
        """Ask for the follower's unionid at the next :meth:`finish_joins`, not now."""
        if self.official is not None:
            self._to_learn[follower_openid] = LEARN_TRIES

    async def finish_joins(self) -> int:
        """Finish the moves a crash or an outage cut short (run every minute:
        the person may not log in or follow again soon); how many were finished."""
        finished = 0
        for follower_openid, tries in list(self._to_learn.items()):  # followed while storage was down
            del self._to_learn[follower_openid]
            try:
                # Into _unlinked (below) if MongoDB is still down.
                finished += await self.learn_follower(follower_openid, retry=tries - 1)
            except Exception:  # noqa: BLE001 - the others still get their turn
                log.warning("could not ask the unionid of %s", follower_openid, exc_info=True)
        for follower_openid, unionid in list(self._unlinked.items()):  # learned during an outage
            try:
                await self.link_follower(follower_openid, unionid)
            except Exception:  # noqa: BLE001 - still down, or busy: kept for the next minute; the others go on
                log.warning("could not link %s to their mini-program self yet", follower_openid, exc_info=True)
                continue
            del self._unlinked[follower_openid]
            finished += 1
        for user in await self.identities.joining():
            target = user.joining or user.link_to
            try:
                follower = await self.followers.get(target) if target else None
                if follower is not None and follower.unionid and follower.unionid == user.unionid:
                    await self.link_follower(follower.openid, follower.unionid)
                    finished += 1
            except Exception:  # noqa: BLE001 - the others still get their turn; this one the next minute
                log.warning("could not finish joining %s to %s now", user.openid, target, exc_info=True)
        return finished

    async def close(self) -> None:
        """At shutdown: links learned during an outage and not made yet are
        said, with what repairs them (they live in memory only; trying again
        now could hold the shutdown for the database's timeout each)."""
        waiting = sorted({*self._unlinked, *self._to_learn})
        if waiting:
            log.warning("%d followers not linked to their mini-program accounts (MongoDB was down when they "
                        "followed): run `wetoop-bot followers backfill-unionid` once it is back: %s",
                        len(waiting), ", ".join(waiting[:20]))

    async def joined(self, openid: str) -> str | None:
        """The follower a mini-program user ``openid`` has become, or is
        becoming (a move under way or cut short: what it writes goes there)."""
        user = await self.identities.get(openid)
        if user is None:
            return None
        return user.subject if user.subject != openid else user.joining

    async def aliases(self, openid: str) -> list[str]:
        """The mini-program openids that became ``openid`` (a notice or a question
        that reached them while they joined is the person's)."""
        return [u.openid for u in await self.identities.of_subject(openid) if u.openid != openid]

    async def learn_follower(self, follower_openid: str, retry: int = 0) -> bool:
        """Ask ``user/info`` for a new follower's unionid and link it; best effort,
        bounded by :data:`LEARN_TIMEOUT` (the welcome is sent regardless).
        Whether they were linked now. ``retry``: how many more minutes to ask
        again (:meth:`finish_joins`) when WeChat or the token's storage did not answer."""
        if self.official is None:
            return False
        try:
            info = await asyncio.wait_for(self.official.user.get(follower_openid), LEARN_TIMEOUT)
        except (WeChatAPIError, TimeoutError) as exc:
            log.info("no unionid for %s: %s", follower_openid, exc)
            if retry > 0 and (isinstance(exc, TimeoutError) or exc.code in (-1, -2, -4)):  # busy, network, no answer
                self._to_learn[follower_openid] = retry
            return False
        unionid = info.get("unionid") if isinstance(info, dict) else None
        if not unionid:
            return False
        # Hardly waiting for a busy mini-program user: the welcome has its
        # seconds to keep, and the upkeep joins them within a minute.
        try:
            await self.link_follower(follower_openid, unionid, wait=FOLLOW_LOCK_WAIT)
        except MongoUnavailable:
            log.warning("could not link %s to their mini-program self now (MongoDB); retried every minute",
                        follower_openid)
            self._unlinked[follower_openid] = unionid
            return False
        return True

    async def backfill_unionids(self, openids: list[str], concurrency: int = 8,
                                progress: Callable[[int, dict[str, int]], None] | None = None) -> dict[str, int]:
        """Ask WeChat for the unionid of followers who have none (they followed
        before it was asked for), :data:`USER_BATCH` a call (``user/info/batchget``),
        and link each one found, as a new follow does. Returns ``{"found", "none",
        "failed", "apart"}`` counts (``apart``: mini-program users left apart, both
        holding a merchant record; ``stopped``: 1 when the first :data:`BACKFILL_CHUNK`
        answered and none had a unionid, as for an account not bound to the open
        platform: the rest would have none either). ``progress`` is told how many
        were asked after each chunk."""
        if self.official is None:
            raise ValueError("no official-account client")
        counts = {"found": 0, "none": 0, "failed": 0, "apart": 0, "stopped": 0}
        gate = asyncio.Semaphore(concurrency)

        async def ask(call, what: str, many: int):
            """``call``'s answer; None when it failed (counted), :data:`_ONE_REFUSED`
            when WeChat refused one openid of a batch (which refuses the batch)."""
            async with gate:
                try:
                    return await call()
                except WeChatAPIError as exc:
                    if exc.code == INVALID_OPENID and many > 1:
                        return _ONE_REFUSED
                    log.warning("%s for %d followers failed: %s", what, many, exc)
                    counts["failed"] += many
                    return None

        async def learnt(openid: str, info) -> None:
            unionid = info.get("unionid") if isinstance(info, dict) else None
            if unionid:
                counts["apart"] += await self.link_follower(openid, unionid)
            counts["found" if unionid else "none"] += 1

        async def one(openid: str) -> None:
            info = await ask(lambda: self.official.user.get(openid), "user/info", 1)
            if info is not None:
                await learnt(openid, info)

        async def batch(part: list[str]) -> None:
            infos = await ask(lambda: self.official.user.get_batch(part), "user/info/batchget", len(part))
            if infos is _ONE_REFUSED:  # the others asked one by one
                await asyncio.gather(*(one(openid) for openid in part))
            elif infos is not None:
                by_openid = {info.get("openid"): info for info in infos if isinstance(info, dict)}
                for openid in part:
                    await learnt(openid, by_openid.get(openid))

        for start in range(0, len(openids), BACKFILL_CHUNK):  # bounded memory for a large audience
            chunk = openids[start:start + BACKFILL_CHUNK]
            await asyncio.gather(*(batch(chunk[i:i + USER_BATCH]) for i in range(0, len(chunk), USER_BATCH)))
            if progress is not None:
                progress(min(start + BACKFILL_CHUNK, len(openids)), counts)
            if counts["found"] == 0 and counts["none"] >= BACKFILL_CHUNK and start + BACKFILL_CHUNK < len(openids):
                counts["stopped"] = 1
                break
        return counts

    async def export(self, subject: str) -> list[dict]:
        """The mini-program identities of a person, for their data export."""
        return [user.to_export() for user in await self.identities.of_subject(subject)]


#: Followers asked at a time by :meth:`MiniSessions.backfill_unionids`.
BACKFILL_CHUNK = 1000
#: Followers a ``user/info/batchget`` call asks for (WeChat's limit).
USER_BATCH = 100
#: WeChat's "invalid openid": for a batch, one of its openids.
INVALID_OPENID = 40003
_ONE_REFUSED = object()


def _login_error(exc: WeChatAPIError) -> BotError:
    if exc.code in _LOGIN_ERRORS:
        kind, code, message = _LOGIN_ERRORS[exc.code]
        return kind(message, code=code)
    if exc.code == 45011:
        return RateLimited(api_texts.CODE_TOO_FREQUENT, 60, code="too_frequent")
    if exc.code in (-4, -3, -2, -1):
        log.warning("jscode2session failed: %s", exc)
        return LoginUnavailable(api_texts.WECHAT_UNAVAILABLE, code="wechat_unavailable")
    # 40013, 40125, 41002 …: our AppID or secret is wrong; users cannot fix that.
    log.error("jscode2session refused our credentials: %s", exc)
    return LoginUnavailable(api_texts.LOGIN_UNAVAILABLE)


__all__ = ["ApiUser", "Limits", "Login", "LoginFailed", "LoginUnavailable", "MiniProgramUser", "MiniSessions",
           "RateLimited", "Unauthorized"]
