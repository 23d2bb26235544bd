"""One inbound message, end to end: exactly once, within WeChat's deadline.

:meth:`Conversation.respond` is what the WeChat handler calls. It

* claims the delivery in the reply cache, so WeChat's retries of the same
  message are not handled again but get the first delivery's reply;
* runs the router with the user's dialog state, turning any failure into a
  polite reply rather than an error;
* answers within ``deadline`` seconds: a handler still busy then is left to
  finish in the background and its reply goes out as customer-service
  messages, while WeChat gets ``success`` at once;
* sends text longer than one message allows as a passive reply plus
  customer-service messages, never truncated.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

import pymongo
from pymongo.errors import ConnectionFailure

from bot import texts
from bot.chat_context import Chat
from bot.errors import BotError
from bot.inbound import Inbound
from bot.replies import Reply, from_dict, to_dict
from bot.router import Router
from bot.services import Services
from bot.textsplit import split_text
from storage.mongo import MongoUnavailable, brief
from storage.redis_store import RedisUnavailable, one_wait_per_message
from storage.locks import UserLocks, new_token
from storage.inbound_gate import InboundGate, Opening
from storage.reply_cache import Claim
from wechat.api import WeChatAPIError, retrying

log = logging.getLogger(__name__)

#: WeChat waits 5 s for a passive reply; leave room for the network.
DEFAULT_DEADLINE = 4.5
#: Seconds all MongoDB calls of one message may take together.
MONGO_BUDGET = 2.2  # server selection gives up after 2 s; replies must come within 3 s
#: For this many seconds after MongoDB failed a message, the next ones get
#: only MONGO_DOWN_BUDGET: a user's second message waits for the first one's
#: lock (its whole budget) and must still be answered within 3 s. The first
#: message after the window tries with the whole budget again.
MONGO_DOWN_WINDOW = 5.0
MONGO_DOWN_BUDGET = 0.3
#: Seconds from a message's arrival by which its MongoDB calls must be over
#: when Redis failed it first (a frozen Redis's 1 s, then a frozen MongoDB's
#: whole budget, took 3.3 s): the reply must come within 3 s.
MONGO_DONE_WITHIN = 2.7
#: Seconds a reply whose gate script timed out is kept to store once Redis answers again.
LATE_FINISH_FOR = 30.0
LATE_FINISH_MAX = 10_000
#: The last interaction is written at most this often per user (seconds).
TOUCH_EVERY = 300
#: Tries of each customer-service piece of a long reply, and the first wait between them (doubling).
SEND_ATTEMPTS = 4
SEND_BACKOFF = 0.5


class OutageLog:
    """Storage failures said once a minute per kind, with how many messages
    each warning stands for, not once per message: during an outage every
    message fails alike, and the log grew with the traffic."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -self.every) >= self.every:
            more = self._since.pop(kind, 0)
            suffix = f" ({more} more since the last such warning)" if more else ""
            log.warning(message + suffix, *args)
            self._last[kind] = now
        else:
            self._since[kind] = self._since.get(kind, 0) + 1
            log.debug(message, *args)


class ReplayedPush(BotError):
    """A signed push whose timestamp and nonce came before with another body."""

    kind = "forbidden"
    code = "replayed_push"


class Conversation:
    """Routes inbound messages and keeps WeChat's delivery promises."""

    def __init__(
        self, router: Router, services: Services, locks: UserLocks, deadline: float = DEFAULT_DEADLINE
    ) -> None:
        self.router = router
        self.services = services
        self.locks = locks
        self.gate = InboundGate(locks.redis, touch_every=TOUCH_EVERY)
        self.deadline = deadline
        self._background: set[asyncio.Task] = set()
        self._outage = OutageLog()
        self._mongo_failed_at = -MONGO_DOWN_WINDOW  # loop time of MongoDB's last failure with the whole budget
        # Messages whose gate script timed out: Redis may still run it when it
        # answers again (claim and lock taken): their reply is stored and the
        # lock released then. (delivery, token) -> (reply, openid, lock token to release, until).
        self._late: dict[tuple[str, str], tuple[dict, str, str, float]] = {}
        self._late_task: asyncio.Task | None = None

    async def respond(self, inbound: Inbound) -> Reply | None:
        """The passive reply to ``inbound`` (``None``: answer ``success``).

        Raises :class:`ReplayedPush` for a push that replays a signature.
        """
        arrived = asyncio.get_running_loop().time()
        delivery = inbound.dedupe_key
        opening = await self._open(delivery, inbound)
        if opening.replayed:
            raise ReplayedPush("该签名已用于另一条消息，拒绝重放")
        if opening.claim.status == "done":
            return from_dict(opening.claim.reply or {})
        if opening.claim.status == "pending":
            stored = await self._wait(delivery)
            return from_dict(stored) if stored else None

        task = asyncio.create_task(self._handle_opened(inbound, opening, arrived))
        if not await _finished_within(task, self.deadline):
            log.warning("no reply within %.1f s for %s; answering later", self.deadline, delivery)
            self._spawn(self._deliver_late(inbound.openid, task, opening))
            # Retries get "success" too; the lock stays with the late handler.
            await self._finish(delivery, None, inbound.openid, opening, release=False)
            return None
        passive, rest = _split(task.result())
        if rest:
            self._spawn(self._send_texts(inbound.openid, rest))
        # Answered before the reply is stored and the lock released, which
        # only retries and the user's next message need: WeChat retries after
        # 5 s without an answer (a retry meanwhile waits for the stored reply),
        # and the user's next message comes only after this reply, when the
        # finish is already on its way to Redis (one that overtakes it waits
        # for the lock). The round trip saved was time every reply waited:
        # 8-9 % more messages a second (bench/RESULTS.md).
        self._spawn(self._finish_logged(delivery, passive, inbound.openid, opening))  # drained at shutdown
        return passive

    async def _handle_opened(self, inbound: Inbound, opening: Opening, arrived: float) -> Reply | None:
        """Handle under the user's lock (waited for here unless the gate got
        it); the lock stays held for the caller to release. ``arrived``: the
        loop time the message came in."""
        # From here on, once Redis failed this message its later calls fail at
        # once (each would wait out its own timeout; a reply must come within 3 s).
        with one_wait_per_message(failed=opening.redis_down):
            if opening.lock_token is None and not opening.redis_down:
                opening.lock_token = await self.locks.acquire(inbound.openid)
            return await self._handle(inbound, opening, arrived)

    async def _handle(self, inbound: Inbound, opening: Opening, arrived: float) -> Reply | None:
        services = self.services
        if opening.touch_due:  # only for the user's own doing (Inbound.opens_window)
            services.followers.touch(inbound.openid, services.clock())
        dialog, state_unknown = opening.dialog, False
        if opening.redis_down:
            state_unknown = True  # the gate's script just failed: do not wait on Redis again
        elif not opening.dialog_known:
            try:
                dialog = await services.dialogs.load(inbound.openid)
            except RedisUnavailable:
                self._outage.warning("dialog", "dialog state unavailable for %s", inbound.openid)
                state_unknown = True
        chat = Chat(message=inbound, services=services, dialog=dialog, router=self.router, state_unknown=state_unknown)
        now = asyncio.get_running_loop().time()
        budget = MONGO_DOWN_BUDGET if now - self._mongo_failed_at < MONGO_DOWN_WINDOW else MONGO_BUDGET
        if opening.redis_down:
            # The gate lost its time to a frozen Redis (not to a lock held by
            # the user's previous message, which is no sign of trouble).
            budget = max(MONGO_DOWN_BUDGET, min(budget, MONGO_DONE_WITHIN - (now - arrived)))
        try:
            # One budget for every MongoDB call of this message: with the
            # database down, the first call uses it up and the rest fail at
            # once, so the user still gets an answer in time.
            with pymongo.timeout(budget):
                return await self.router.dispatch(chat)
        except BotError as exc:
            return Reply(exc.message)
        except MongoUnavailable as exc:
            if budget == MONGO_BUDGET and isinstance(exc, ConnectionFailure):
                self._mongo_failed_at = asyncio.get_running_loop().time()
            # One line, not a traceback: during an outage every message logs it.
            self._outage.warning("mongo", "MongoDB unavailable while handling %s: %s", inbound.dedupe_key, brief(exc))
            return Reply(texts.STORAGE_DOWN)
        except RedisUnavailable as exc:
            self._outage.warning("redis", "Redis unavailable while handling %s: %s", inbound.dedupe_key, str(exc)[:200])
            return Reply(texts.DIALOG_UNAVAILABLE)
        except Exception:
            log.exception("handler failed for %s", inbound.dedupe_key)
            return Reply(texts.INTERNAL_ERROR)

    async def url_checked(self, push_nonce: str) -> None:
        """Remember the signed query of a URL check as used (see
        :meth:`wechat.protocol.Endpoint.verify_url`)."""
        try:
            await self.gate.url_checked(push_nonce)
        except RedisUnavailable:  # as for pushes: without Redis there is no replay check
            self._outage.warning("gate", "Redis unavailable; a URL check's signature not remembered")

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (up to ``timeout``) for background deliveries, e.g. at shutdown;
        stop storing late replies (their claims and locks expire by themselves)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)
        if self._late_task is not None and not self._late_task.done():
            self._late_task.cancel()
            await asyncio.gather(self._late_task, return_exceptions=True)

    # -- internals ----------------------------------------------------------

    async def _open(self, delivery: str, inbound: Inbound) -> Opening:
        token = new_token()
        try:
            return await self.gate.open(
                delivery, inbound.openid, self.services.clock(), inbound.push_nonce, inbound.push_digest,
                interacted=inbound.opens_window,  # WeChat's reports do not open the 48 hours
                token=token,
            )
        except RedisUnavailable:
            # Without Redis a retry may be handled twice and the user's
            # messages are not serialised; answering beats silence.
            self._outage.warning("gate", "Redis unavailable; %s handled without retry protection or lock", delivery)
            return Opening(Claim("new"), lock_token=token, touch_due=inbound.opens_window, redis_down=True)

    async def _finish(
        self, delivery: str, reply: Reply | None, openid: str, opening: Opening, release: bool = True
    ) -> None:
        if opening.redis_down:
            # A frozen Redis runs the timed-out script when it wakes: the claim
            # would then say "pending" to WeChat's retries and the lock hold the
            # user's next messages. Store the reply and release once it answers.
            if opening.lock_token is not None:
                until = asyncio.get_running_loop().time() + LATE_FINISH_FOR
                if len(self._late) < LATE_FINISH_MAX:  # a retry in the outage has a token of its own
                    self._late[(delivery, opening.lock_token)] = (to_dict(reply), openid,
                                                                   opening.lock_token if release else "", until)
                if self._late_task is None or self._late_task.done():
                    self._late_task = asyncio.create_task(self._finish_late())
            return
        try:
            await self.gate.finish(delivery, to_dict(reply), openid, opening.lock_token if release else None)
        except RedisUnavailable:
            self._outage.warning("reply", "could not store the reply of %s", delivery)

    async def _finish_late(self) -> None:
        """Store the replies and release the locks of messages whose gate
        script timed out, as soon as Redis answers (twice: a script Redis
        still held may run just after the first)."""
        loop = asyncio.get_running_loop()
        stored: dict[tuple[str, str], int] = {}
        while self._late:
            await asyncio.sleep(0.5)
            items = list(self._late.items())
            # Together: the gate sends the calls of one loop turn as one pipeline.
            results = await asyncio.gather(
                *(self.gate.finish(d, reply, openid, token or None) for (d, _), (reply, openid, token, _) in items),
                return_exceptions=True,
            )
            for (entry, (_, _, _, until)), result in zip(items, results):
                if isinstance(result, BaseException):
                    if loop.time() > until:
                        self._late.pop(entry, None)
                    continue
                stored[entry] = stored.get(entry, 0) + 1
                if stored[entry] >= 2:
                    self._late.pop(entry, None)
                    stored.pop(entry, None)

    async def _wait(self, delivery: str) -> dict | None:
        try:
            return await self.services.replies.wait(delivery, self.deadline)
        except RedisUnavailable:
            return None

    async def _deliver_late(self, openid: str, task: asyncio.Task, opening: Opening) -> None:
        reply = await task  # never raises
        await self.locks.release(openid, opening.lock_token)
        if reply is not None and reply.text:
            await self._send_texts(openid, split_text(reply.text, suffix=texts.CONTINUED))

    async def _send_texts(self, openid: str, pieces: list[str]) -> None:
        """Customer-service messages, in order; a busy WeChat is tried again a few
        times (the rest of a long reply must not vanish on one -1); stop at a
        failure that stays."""
        wechat = self.services.wechat
        if wechat is None:
            log.error("cannot send customer-service messages: WECHAT_APPID/WECHAT_SECRET not set")
            return
        for piece in pieces:
            try:
                await retrying(functools.partial(wechat.message.send_text, openid, piece), SEND_ATTEMPTS, SEND_BACKOFF)
            except WeChatAPIError as exc:
                log.error("customer-service message to %s failed: %s", openid, exc)
                return

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _finish_logged(self, delivery: str, reply: Reply | None, openid: str, opening: Opening) -> None:
        try:
            await self._finish(delivery, reply, openid, opening)
        except Exception:  # the reply is sent: nobody else would hear of it
            log.exception("could not store the reply of %s", delivery)


def _split(reply: Reply | None) -> tuple[Reply | None, list[str]]:
    if reply is None or not reply.text:
        return reply, []
    pieces = split_text(reply.text, suffix=texts.CONTINUED)
    return Reply(pieces[0]), pieces[1:]


async def _finished_within(task: asyncio.Task, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``task``; whether it finished. The task runs
    on either way, also when the caller is cancelled (``wait_for(shield(task))``
    does the same with two more futures and a timeout context per message:
    3 % of the webhook's CPU, ``bench/RESULTS.md``)."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(seconds, wake)
    task.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    return task.done()
