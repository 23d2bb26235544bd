"""Everything one service process holds, built from the configuration.

:class:`Runtime` connects MongoDB and Redis (URLs already resolved: the
embedded servers are started by the CLI before the event loop), builds the
repositories, the domain services, the WeChat client and the
:class:`~bot.conversation.Conversation`. The handlers and the CLI use this one
object; there are no module globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import datetime as dt
import logging
from pathlib import Path
from typing import Callable

import pymongo.errors
import redis

from bot import chat, my_account
from bot.admin_accounts import AdminAccounts
from bot.audit import Audit
from bot.console import Console
from bot.answers import Answers
from bot.consent import Consents
from bot.dialogs import DialogEngine
from bot.delivery_worker import ACCOUNT_ERRORS, DeliveryWorker, WorkerDeps
from bot.merchants import MerchantAccounts, tell_merchants_through
from bot.notice_checks import load_templates
from bot.notices import Broadcasts
from bot.preferences import NoticePreferences
from bot.registration import REGISTRATION
from bot.conversation import DEFAULT_DEADLINE, Conversation
from bot.export import Exports
from bot.router import Router
from bot.services import Services, utcnow
from bot.terms import Terms
from bot.inbox import Inbox
from bot.mini_sessions import MiniSessions
from service.config import Config, ConfigError
from storage import mongo, redis_store
from storage.admin_drafts import Drafts
from storage.admin_sessions import AdminSessions
from storage.admin_stats import AdminStats
from storage.admin_users import AdminUsers
from storage.activity import Activity
from storage.agreements import AgreementVersions
from storage.api_sessions import ApiSessions, RequestCounters
from storage.identities import Identities
from storage.notice_reads import NoticeReads
from storage.audit_log import AuditLog
from storage.consent_view import ConsentView
from storage.openid_moves import OpenidMoves
from storage.consents import ConsentLedger
from storage.deliveries import Deliveries
from storage.delivery_journal import DeliveryJournal
from storage.dialog_state import DialogStates
from service.server_secret import server_secret
from storage.export_links import ExportLinks
from storage.followers import Followers
from storage.locks import UserLocks
from storage.login_limits import LoginLimits
from storage.merchants import Merchants
from storage.notices import Notices
from storage.preferences import Preferences
from storage.qa_log import QALog
from storage.rate_limit import SharedRateLimit
from storage.recent_opt_outs import RecentOptOuts
from storage.reply_cache import ReplyCache
from storage.submit_tokens import SubmitTokens
from storage.consent_keys import ConsentKeys
from storage.work_queue import WorkQueue
from wechat.api import WeChatAPI, WeChatAPIError
from wechat.client import SharedTokenClient
from wechat.miniprogram import MiniProgramAPI, MiniProgramClient
from wechat.protocol import Endpoint

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0
CLOSE_TIMEOUT = 2.0  # a frozen database holds the stop that long, and no longer

#: Seconds between catch-ups of the dashboard's consent view in ``serve``.
VIEW_EVERY = 60.0
#: Seconds between attempts to create the indexes and store the seed
#: agreement when MongoDB was down at start-up.
DATABASE_RETRY = 1.0
#: ... and when it answers but refuses them (data breaking a unique index).
DATABASE_REFUSED_RETRY = 60.0
#: Seconds the start-up check of the WeChat account waits for an access token.
WECHAT_CHECK_TIMEOUT = 10.0


class Runtime:
    """Clients, repositories and services of one process.

    ``clock`` is the single source of "now" for the domain (tests pass a
    controllable one); ``router`` and ``deadline`` default to the product's.
    """

    def __init__(
        self,
        config: Config,
        mongodb_uri: str,
        redis_url: str,
        *,
        database: str | None = None,
        router: Router | None = None,
        deadline: float = DEFAULT_DEADLINE,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.config = config
        self.clock = clock
        self.mongo_client, self.db = mongo.connect(mongodb_uri, database)
        self.redis = redis_store.connect(redis_url)
        self.locks = UserLocks(self.redis)
        self.redis_sync = redis_store.connect_sync(redis_url)
        self.wechat: WeChatAPI | None = None
        if config.wechat_appid and config.wechat_secret:
            client = SharedTokenClient(
                config.wechat_appid, config.wechat_secret, config.wechat_api_base, self.redis_sync
            )
            self.wechat = WeChatAPI(client)
        self.endpoint: Endpoint | None = None
        if config.wechat_token:
            self.endpoint = Endpoint(config.wechat_token, config.wechat_aes_key, config.wechat_appid,
                                     mode=config.encrypt_mode)

        self.followers = Followers(self.db)
        self.versions = AgreementVersions(self.db)
        self.ledger = ConsentLedger(self.db)
        self.consent_view = ConsentView(self.db)
        self.notices = Notices(self.db)
        self.deliveries = Deliveries(self.db)
        self.preferences = NoticePreferences(Preferences(self.db), RecentOptOuts(self.redis))
        self.queue = WorkQueue(self.redis)
        self.journal = DeliveryJournal(self.redis)
        self.merchants = MerchantAccounts(Merchants(self.db), clock)
        self.broadcasts = Broadcasts(
            self.notices, self.deliveries, self.queue, self.followers, self.merchants.repo, self.ledger, self.journal, clock
        )
        self.templates = load_templates(config.notice_templates)
        self._probes: dict[str, asyncio.Future] = {}  # health pings under way (see health)
        #: Indexes made and the seed agreement stored (see prepare).
        self.database_ready = False
        self._closing = False  # set by close(): the retries stop
        self.audit = Audit(AuditLog(self.db), clock)
        self.terms = Terms(self.versions, self.broadcasts, clock, locks=self.locks, audit=self.audit)
        self.consents = Consents(self.ledger, self.terms, clock)
        self.qa_log = QALog(self.db)
        self.answers = Answers(
            self.terms, self.qa_log, clock,
            override_dir=Path(config.data_dir) / "qa", cache_dir=Path(config.data_dir) / "cache",
        )
        self.exports = Exports(
            self.followers, self.consents, self.merchants, self.preferences, self.broadcasts, ExportLinks(self.redis, server_secret(config)), clock
        )
        self.services = Services(
            followers=self.followers,
            dialogs=DialogStates(self.redis),
            replies=ReplyCache(self.redis),
            terms=self.terms,
            consents=self.consents,
            exports=self.exports,
            merchants=self.merchants,
            engine=DialogEngine(),
            preferences=self.preferences,
            broadcasts=self.broadcasts,
            answers=self.answers,
            wechat=self.wechat,
            clock=clock,
            public_url=config.base_url,
            locks=self.locks,
            consent_keys=ConsentKeys(self.redis),
        )
        self.conversation = Conversation(router or chat.router, self.services, locks=self.locks, deadline=deadline)
        tell_merchant = tell_merchants_through(self.broadcasts)

        async def after_admin_change(merchant, before: str, reason: str, by: str) -> None:
            if merchant.status == "closed":
                await my_account.forget_registration_dialog(self.services, merchant.openid)
            await tell_merchant(merchant, before, reason, by)

        self.merchants.on_admin_change = after_admin_change
        # The admin console: accounts and its actions over the same services (and the audit log above).
        self.admins = AdminAccounts(
            AdminUsers(self.db), AdminSessions(self.redis), LoginLimits(self.redis), self.audit, clock, locks=self.locks
        )
        self.console = Console(
            broadcasts=self.broadcasts, terms=self.terms, merchants=self.merchants, followers=self.followers,
            drafts=Drafts(self.db), stats=AdminStats(self.db), consent_view=self.consent_view, audit=self.audit,
            qa_override_dir=Path(config.data_dir) / "qa", clock=clock, locks=self.locks,
            submit_tokens=SubmitTokens(self.redis), identities=Identities(self.db), consents=self.consents,
        )

        # The mini-program API: its own WeChat client (login), sessions, identities, inbox read-state.
        self.miniprogram: MiniProgramAPI | None = None
        if config.miniprogram_appid and config.miniprogram_secret:
            self.miniprogram = MiniProgramAPI(
                MiniProgramClient(config.miniprogram_appid, config.miniprogram_secret, config.wechat_api_base)
            )
        self.mini = MiniSessions(
            self.miniprogram, ApiSessions(self.redis), Identities(self.db), self.followers,
            RequestCounters(self.redis), clock,
            official=self.wechat, records=OpenidMoves(self.db, self.ledger, self.consent_view, flush_logs=self.qa_log.flush), locks=self.locks,
        )
        self.services.mini = self.mini
        self.inbox = Inbox(self.broadcasts, NoticeReads(self.db), clock, aliases=self.mini.aliases)
        self.exports.parts.update(
            miniprogram_logins=self.mini.export, notice_reads=self._with_aliases(self.inbox.export, "notice"),
            questions=self._with_aliases(self.qa_log.export, "at"),
            dialog_drafts=lambda openid: self.services.dialogs.export(openid, (REGISTRATION.name,)),
        )

    def _with_aliases(self, part, order: str):
        """An export part that also holds what is kept under the mini-program
        openids that became this person (written there by another process
        while they joined)."""
        async def combined(openid: str) -> list[dict]:
            rows = list(await part(openid))
            for alias in await self.mini.aliases(openid):
                rows += await part(alias)
            return sorted(rows, key=lambda row: str(row.get(order) or ""))

        return combined

    async def prepare(self, qa: bool = True, require_mongo: bool = False) -> None:
        """Create indexes and store the seed agreement; a database that is down
        now is retried on first use (``require_mongo``: raise
        :class:`~storage.mongo.MongoUnavailable` instead, for a one-off command
        that could do nothing without it). ``qa=False`` skips building the Q&A
        index (CLI commands that answer no questions)."""
        if not require_mongo:  # a long-lived process (a one-off command says so when it needs Redis)
            await self._check_redis()
        try:
            await self._prepare_database()
        except mongo.MongoUnavailable as exc:
            if require_mongo:
                raise
            log.warning("MongoDB unavailable at start-up, indexes and the seed agreement not checked: %s; "
                        "tried again every %.0f s", mongo.brief(exc), DATABASE_RETRY)
            self._database_retry = asyncio.create_task(self._retry_database())
        except pymongo.errors.OperationFailure as exc:
            # Answering but refusing: a mistake that no waiting mends (a wrong
            # password, an index defined otherwise by an older version).
            raise ConfigError(_mongo_refusal(exc)) from None
        # The Q&A index takes about half a second to build: build it in the
        # background so the service answers at once (a question that comes
        # first waits for it); /healthz says ready once it is built.
        if qa:
            self._build_qa()

    async def _check_redis(self) -> None:
        """Refuse to start on a Redis mistake that no waiting mends (a wrong
        password, a database number out of range); one that is down is said
        and used once it answers (as MongoDB)."""
        try:
            await self.redis.ping()
        except redis.AuthenticationError as exc:
            raise ConfigError(f"Redis 拒绝了 REDIS_URL 中的用户名或密码，请检查 REDIS_URL（{exc}）") from None
        except redis.ResponseError as exc:
            raise ConfigError(f"Redis 拒绝了连接，请检查 REDIS_URL（如数据库编号是否超出范围）：{exc}") from None
        except redis_store.RedisUnavailable as exc:
            log.warning("Redis unavailable at start-up (%s): dialogs and notices wait for it; "
                        "check REDIS_URL if it stays so (a TLS URL, rediss://, to a server without TLS never answers)",
                        exc)
            return
        for problem in await redis_store.keeping_problems(self.redis):
            log.warning("Redis 的配置会丢失数据：%s（通知队列和发送记录需要 maxmemory-policy noeviction 和持久化，见 README）", problem)

    async def check_wechat(self) -> str | None:
        """Ask for the account's access token once, at start-up: a wrong AppID
        or AppSecret, or this server's IP missing from the account's whitelist,
        is said now, not when the first notice is paused for it. Never refuses
        to start (WeChat may be briefly unreachable). Returns what was logged."""
        if self.wechat is None:
            return None
        try:
            await asyncio.wait_for(self.wechat.access_token(), WECHAT_CHECK_TIMEOUT)
            return None
        except asyncio.TimeoutError:
            code, message = None, f"{WECHAT_CHECK_TIMEOUT:.0f} 秒内没有回答"
        except WeChatAPIError as exc:
            code, message = exc.code, exc.message
        if code in ACCOUNT_ERRORS:
            said = (f"微信拒绝了公众号的接口凭据：{ACCOUNT_ERRORS[code]}（{code}）。通知、菜单推送和 unionid 查询都会失败，"
                    "请检查 WECHAT_APPID、WECHAT_SECRET 以及公众号后台的 IP 白名单")
            log.error(said)
        else:
            said = (f"启动时未能取得微信接口的 access_token（{code if code is not None else '超时'}：{message}）："
                    "通知会在能取得时发送；若一直如此，请检查网络和 WECHAT_API_BASE")
            log.warning(said)
        return said

    async def _prepare_database(self) -> None:
        await mongo.ensure_indexes(
            [self.followers, self.versions, self.ledger, self.consent_view, self.notices, self.merchants.repo,
             self.deliveries, self.preferences.repo, self.qa_log, self.mini.identities, self.inbox.reads,
             self.admins.users, self.audit.log, self.console.drafts]
        )
        await self.terms.ensure_seed()
        self.database_ready = True

    async def _retry_database(self) -> None:
        """Until it works: a service started while MongoDB was down made its
        unique indexes (one account per openid …) only if something else did.
        Every second while the database is unreachable; once it answers but
        refuses (data that breaks a unique index), said once and tried again
        every minute (an admin must mend the data; /healthz stays "starting")."""
        wait, refused = DATABASE_RETRY, ""
        while not self.database_ready and not self._closing:
            await asyncio.sleep(wait)
            try:
                await self._prepare_database()
                log.warning("MongoDB answers again: indexes and the seed agreement checked")  # as visible as the outage
            except mongo.MongoUnavailable:
                wait = DATABASE_RETRY
            except Exception as exc:  # noqa: BLE001 - said once; tried again
                wait = DATABASE_REFUSED_RETRY
                if mongo.brief(exc) != refused:
                    refused = mongo.brief(exc)
                    log.error("MongoDB refused the indexes or the seed agreement (tried again every %.0f s): %s",
                              DATABASE_REFUSED_RETRY, refused)

    def _build_qa(self) -> None:
        self._qa_build = asyncio.create_task(self.answers.prepare())
        self._qa_build.add_done_callback(_log_build_failure)

    async def freeze_start_up_objects(self) -> None:
        """Once the Q&A index is built, take what start-up allocated (jieba's
        dictionary, the index) out of the garbage collector's sight: every full
        collection would otherwise walk those millions of objects and stall the
        event loop for tens of milliseconds, which showed as /wechat p99."""
        build = getattr(self, "_qa_build", None)
        if build is not None:
            await asyncio.gather(build, return_exceptions=True)
        gc.collect()
        gc.freeze()

    async def keep_up(self, stop: asyncio.Event, every: float = VIEW_EVERY) -> None:
        """Now and every ``every`` seconds until ``stop``: catch the consent view
        up with the ledger, so the dashboard's own catch-up has little to do
        (the first one after an upgrade replays the whole ledger), and finish
        the joins of mini-program users to their followers that something cut
        short (:meth:`bot.mini_sessions.MiniSessions.finish_joins`)."""
        while not stop.is_set():
            for name, task in (("consent view catch-up", lambda: self.consent_view.catch_up(self.clock())),
                               ("finishing joins", self.mini.finish_joins)):
                try:
                    await task()
                except (*mongo.MongoUnavailable, *redis_store.RedisUnavailable) as exc:
                    # An outage: one line a minute, not a traceback; the next round retries.
                    log.warning("%s: storage unavailable (%s); tried again in %.0f s", name, mongo.brief(exc), every)
                except Exception:
                    log.warning("%s failed", name, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    def worker(self, concurrency: int = 8) -> DeliveryWorker:
        """A broadcast worker using this process's clients."""
        deps = WorkerDeps(
            broadcasts=self.broadcasts,
            notices=self.notices,
            deliveries=self.deliveries,
            followers=self.followers,
            activity=Activity(self.redis),
            preferences=self.preferences.repo,
            queue=self.queue,
            journal=self.journal,
            limiter=SharedRateLimit(self.redis, self.config.notice_rate),
            wechat=self.wechat,
            templates=self.templates,
            clock=self.clock,
            identities=self.mini.identities,
            recent_opt_outs=self.preferences.recent,
        )
        return DeliveryWorker(deps, concurrency=concurrency)

    async def health(self) -> dict[str, str]:
        """``{"mongo": "ok"|"starting"|"down", "redis": "ok"|"down", "qa": "ok"|"starting"}``,
        within about 2 s; ``mongo`` is ``starting`` while a database that was
        down at start-up answers again but its indexes are still being made;
        ``qa`` is ``starting`` until the Q&A index is built
        (a build that failed, the database being down at start-up, is tried
        again here).

        A ping that takes longer is reported ``down`` but never cancelled:
        cancelling PyMongo in the middle of choosing a server left its
        topology lock held, and every later operation of the process waited
        on it for good. One ping of each kind runs at a time; polls that come
        meanwhile wait for the same one.
        """

        async def check(name: str, probe) -> str:
            running = self._probes.get(name)
            if running is None or running.done():
                running = self._probes[name] = asyncio.ensure_future(probe())
            done, _ = await asyncio.wait({running}, timeout=HEALTH_TIMEOUT)
            return "ok" if done and not running.cancelled() and running.result() else "down"

        mongo_state, redis_state = await asyncio.gather(
            check("mongo", lambda: mongo.ping(self.db)), check("redis", lambda: redis_store.ping(self.redis))
        )
        if mongo_state == "ok" and not self.database_ready:
            mongo_state = "starting"  # answering, but its indexes are not made yet (_retry_database)
        return {"mongo": mongo_state, "redis": redis_state, "qa": self.qa_state()}

    def qa_state(self) -> str:
        """``ok`` once the Q&A index is built, else ``starting`` (a build that
        failed, the database being down at start-up, is tried again here)."""
        if not self.answers.ready:
            build = getattr(self, "_qa_build", None)
            if build is None or build.done():
                self._build_qa()
        return "ok" if self.answers.ready else "starting"

    async def close(self) -> None:
        self._closing = True
        retry = getattr(self, "_database_retry", None)
        if retry is not None:
            retry.cancel()
            # Bounded: a cancel that lands inside the driver's server selection can be
            # swallowed there, and the retry slept on (a stop, and a test's teardown, hung).
            await asyncio.wait({retry}, timeout=CLOSE_TIMEOUT + DATABASE_RETRY)
        build = getattr(self, "_qa_build", None)
        if build is not None and not build.done():
            await asyncio.gather(build, return_exceptions=True)
        await self.broadcasts.close()
        await self.conversation.drain()
        await self.qa_log.close()
        await self.followers.close()
        await self.mini.close()
        if self.wechat is not None:
            await self.wechat.aclose()
        if self.miniprogram is not None:
            self.miniprogram.close()
        await self.redis.aclose()
        self.redis_sync.close()
        # Bounded, and not cancelled (see health): a stop must not wait for ever
        # on a database that is gone.
        closing = asyncio.ensure_future(self.mongo_client.close())
        if not (await asyncio.wait({closing}, timeout=CLOSE_TIMEOUT))[0]:
            log.warning("MongoDB client did not close within %s s", CLOSE_TIMEOUT)


def _mongo_refusal(exc: "pymongo.errors.OperationFailure") -> str:
    """What an operator is told when MongoDB refuses the start-up's indexes or seed."""
    code = exc.code
    if code == 18:
        return f"MongoDB 拒绝了 MONGODB_URI 中的用户名或密码，请检查 MONGODB_URI（代码 18：{mongo.brief(exc)}）"
    if code == 13:
        return f"MONGODB_URI 的账户没有所需权限（需读写本数据库并建立索引；代码 13：{mongo.brief(exc)}）"
    if code in (85, 86):
        return (f"数据库中已有同名但定义不同的索引（代码 {code}：{mongo.brief(exc)}）。请删除该旧索引后重新启动，"
                "服务会按当前版本重新建立")
    if code == 11000:
        return f"数据库中已有重复的数据，无法建立唯一索引，请先清理重复记录（{mongo.brief(exc)}）"
    return f"MongoDB 拒绝了启动检查（建立索引、写入默认协议{f'；代码 {code}' if code else ''}）：{mongo.brief(exc)}"


def _log_build_failure(build: asyncio.Task) -> None:
    if not build.cancelled() and build.exception() is not None:
        log.warning("Q&A index not built (tried again on the next health check or question): %s", build.exception())
