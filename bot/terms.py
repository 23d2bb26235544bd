"""Which agreement version is in force, which is coming, and publishing new ones.

Versions are few and change rarely, so each process keeps them for a few
seconds; ``current`` and ``upcoming`` are then decided against the clock at
every call, so a version takes effect on time without any job. If MongoDB is
down, the last known versions (at worst the seed) still answer reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Callable

from bot import amendment_rules, texts
from bot.agreement import AgreementVersion, load_seed
from bot.errors import BotError
from bot.notice_checks import TITLE_LIMIT, NoticeRefused, check_text
from bot.serial import one_at_a_time
from storage.agreements import AgreementVersions, VersionExists
from storage.locks import UserLocks
from storage.mongo import MongoUnavailable, detached

if TYPE_CHECKING:
    from bot.audit import Audit
    from bot.notices import Broadcasts

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
#: How old the cache may be and still answer while a fresh read runs: past
#: this (the first message after a quiet spell), callers wait for the read.
STALE_SECONDS = 2 * CACHE_SECONDS
#: How long callers wait for that read before the last versions known answer.
STALE_WAIT = 0.5
#: The time a read of the versions may take (a database slow or down fails it; the cache answers).
LOAD_BUDGET = 5.0


class VersionNotFound(BotError):
    kind = "not_found"
    code = "version_not_found"

    def __init__(self, message: str, code: str | None = None, withdrawal: dict | None = None) -> None:
        super().__init__(message, code=code)
        self.withdrawal = withdrawal  # a withdrawn version's: when, by whom, why (the message says it)
        self.withdrawn = withdrawal is not None


def withdrawal_text(withdrawal: dict) -> str:
    """When and why a version was withdrawn, as users and admins read it."""
    return (f"版本 {withdrawal['version']} 已于 {amendment_rules.show(withdrawal['at'])}撤回，从未生效"
            f"（原因：{withdrawal['reason']}）。")


class AlreadyWithdrawn(BotError):
    """Withdrawing a version that is withdrawn already: a conflict with its
    state (it exists, for the record), not a version that is not there."""

    kind = "conflict"
    code = "version_already_withdrawn"

    def __init__(self, withdrawal: dict) -> None:
        super().__init__(
            f"版本 {withdrawal['version']} 已于 {amendment_rules.show(withdrawal['at'])}撤回"
            f"（原因：{withdrawal['reason']}），无需再次撤回；它不会生效。"
        )


class Terms:
    """The agreement's versions and their publication."""

    def __init__(
        self,
        versions: AgreementVersions,
        broadcasts: "Broadcasts",
        clock: Callable[[], dt.datetime],
        locks: UserLocks | None = None,
        audit: "Audit | None" = None,
    ) -> None:
        self._repo = versions
        self._audit = audit
        self._locks = locks
        self._broadcasts = broadcasts
        self._clock = clock
        self._cache: list[AgreementVersion] = []
        self._loaded_at = float("-inf")
        # One load at a time: when the cache expires under load, every request
        # waits for the same read instead of each reading every version.
        self._loading: asyncio.Future | None = None
        self._generation = self._loading_generation = 0
        # Reads are numbered as they start; the cache holds the newest read to
        # start, whatever order they finish in (a background load that began
        # before a refresh must not put older versions back).
        self._reads = self._cache_read = 0
        self._seed = load_seed()
        self.monotonic = time.monotonic  # the cache's clock (a test may move it on)

    async def ensure_seed(self) -> None:
        """Store the seed version (2022-05-22) if this database has no versions yet."""
        try:
            await self._repo.insert(self._seed)
            log.info("stored the seed agreement %s", self._seed.version)
        except VersionExists:
            pass
        self._invalidate()

    def _invalidate(self) -> None:
        """Forget the cache; a read already under way no longer counts."""
        self._loaded_at = float("-inf")
        self._generation += 1
        self._reads += 1
        self._cache_read = self._reads

    def _install(self, read: int, versions: list[AgreementVersion] | None) -> None:
        """Keep what read number ``read`` found (``None``: it failed) unless a later read is kept already."""
        if read <= self._cache_read:
            return
        if versions is not None:
            self._cache, self._cache_read = versions, read
        elif not self._cache:
            self._cache = [self._seed]
        # (Also after a failure: do not pay the database's timeout again on every call.)
        self._loaded_at = self.monotonic()

    async def versions(self) -> list[AgreementVersion]:
        """Every published version, oldest effective date first.

        Read at most every :data:`CACHE_SECONDS`. A cache expired less than
        :data:`STALE_SECONDS` ago is still answered from while the fresh read
        runs, so a busy database never holds up every message at once; an
        older one (after a quiet spell, or a publication in this process:
        :meth:`_invalidate`) makes callers wait for the read, at most
        :data:`STALE_WAIT` seconds once any versions are known (a database
        slow or down then leaves them to answer). So a version another process
        published shows within :data:`STALE_SECONDS`."""
        age = self.monotonic() - self._loaded_at
        if age > CACHE_SECONDS:
            loading = self._loading
            if loading is None or loading.done() or self._loading_generation != self._generation:
                self._loading_generation = self._generation
                # Shared by every caller: its own budget, not the first caller's.
                loading = self._loading = detached(self._load(), budget=LOAD_BUDGET)
            if age > STALE_SECONDS:
                if not self._cache:
                    await asyncio.shield(loading)
                else:
                    # A read answers in milliseconds; one that does not means the
                    # database is slow or down: the last versions known answer
                    # meanwhile (an action that must see the newest calls refresh()).
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(loading), STALE_WAIT)
        return self._cache

    async def refresh(self) -> None:
        """Read the versions now, not from the cache: before an action that must
        see a version another process published a moment ago.

        Read by the caller alone (other messages keep answering from the
        cache meanwhile); with the database down the cache stays, and the
        caller's own next read fails and says so.
        """
        self._reads += 1
        read = self._reads
        try:
            versions = await self._read()
        except MongoUnavailable:
            return
        self._install(read, versions)

    async def _read(self) -> list[AgreementVersion]:
        withdrawn = await self._repo.withdrawn()
        return [v for v in await self._repo.all() if v.version not in withdrawn] or [self._seed]

    async def _load(self) -> None:
        self._reads += 1
        read = self._reads
        try:
            versions = await self._read()
        except MongoUnavailable:
            log.warning("agreement versions unavailable; using the last known ones")
            versions = None
        self._install(read, versions)

    async def current(self) -> AgreementVersion:
        """The version in force now."""
        now = self._clock()
        in_force = [v for v in await self.versions() if v.effective_at <= now]
        return in_force[-1] if in_force else (await self.versions())[0]

    async def upcoming(self) -> AgreementVersion | None:
        """The next version published but not yet in force, if any."""
        pending = await self.pending()
        return pending[0] if pending else None

    async def withdrawal(self, version: str) -> dict | None:
        """When, by whom and why ``version`` was withdrawn; ``None`` if it was not."""
        return await self._repo.withdrawal(version)

    async def withdrawn(self) -> list[AgreementVersion]:
        """The versions withdrawn before they took effect (kept for the record)."""
        gone = await self._repo.withdrawn()
        return [v for v in await self._repo.all() if v.version in gone]

    async def since(self, version_id: str) -> list[AgreementVersion]:
        """The versions that took effect after ``version_id``, up to the one in
        force, oldest first (the one in force alone if ``version_id`` is unknown)."""
        current = await self.current()
        versions = await self.versions()
        base = next((v for v in versions if v.version == version_id), None)
        if base is None:
            return [current]
        return [v for v in versions if base.effective_at < v.effective_at <= current.effective_at] or [current]

    async def pending(self) -> list[AgreementVersion]:
        """Every version published but not yet in force, the next first."""
        now = self._clock()
        return [v for v in await self.versions() if v.effective_at > now]

    async def get(self, version: str, withdrawn_too: bool = False) -> AgreementVersion:
        """The published version ``version``; :class:`VersionNotFound` otherwise
        (saying so for a withdrawn one, unless ``withdrawn_too``: admins may
        read a withdrawn text, compare it and draft from it)."""
        versions = await self.versions()
        if withdrawn_too:
            versions = versions + await self.withdrawn()
        for candidate in versions:
            if candidate.version == version:
                return candidate
        for candidate in versions:
            # Chat folds commands to lower case, so compare without case too
            # (publication refuses two ids that differ only in case).
            if candidate.version.casefold() == version.casefold():
                return candidate
        withdrawal = await self._repo.withdrawal(version)
        if withdrawal is not None:
            raise VersionNotFound(withdrawal_text(withdrawal), withdrawal=withdrawal)
        raise VersionNotFound(f"没有版本为 {version} 的协议")

    async def readable(self, version: str) -> tuple[AgreementVersion, dict | None]:
        """A version as users may read it: a published one, or one withdrawn
        with its withdrawal (when, by whom, why): everyone was told of it by an
        amendment notice, so its text stays readable, said to be withdrawn.
        :class:`VersionNotFound` for one never published."""
        try:
            return await self.get(version), None
        except VersionNotFound as exc:
            if exc.withdrawal is None:
                raise
            return await self.get(version, withdrawn_too=True), exc.withdrawal

    async def check(self, draft: AgreementVersion, *, reason: str, effective_at: dt.datetime | None) -> None:
        """Raise :class:`~bot.amendment_rules.AmendmentRefused` if ``draft`` could
        not be published now (:meth:`publish` checks again, under its lock): a
        console asks to confirm warnings only about a draft that can be published."""
        now = self._clock()
        amendment_rules.check_publication(
            draft, reason=reason, effective_at=effective_at or now, published_at=now, published=await self._read(),
            withdrawn=await self._repo.withdrawn(),
        )

    async def publish(
        self, draft: AgreementVersion, *, reason: str, effective_at: dt.datetime | None, by: str,
        address: str = "",
    ) -> tuple[AgreementVersion, str]:
        """Publish ``draft``; ``effective_at=None`` means now.

        Returns the published version and the id of the amendment notice
        created for everyone who accepted any version. Raises
        :class:`~bot.amendment_rules.AmendmentRefused` with the rule broken.
        The audit log gets the publication (by ``by`` from ``address``) once
        the version is stored, even if its notice then fails.
        """
        # The order rules hold only if nobody publishes between the check and
        # the insert (two admins at once published two versions for one moment).
        async with one_at_a_time(self._locks, "terms:publication"):
            published_at = self._clock()
            effective_at = effective_at or published_at
            self._invalidate()
            existing = await self._read()
            amendment_rules.check_publication(
                draft, reason=reason, effective_at=effective_at, published_at=published_at, published=existing,
                withdrawn=await self._repo.withdrawn(),
            )
            version = draft.published(reason, published_at, effective_at)
            # Checked before the version is stored: a notice refused afterwards
            # would leave a published amendment that nobody was told about.
            try:
                title, body = check_text(_notice_title(f"《{version.title}》修改通知", version), texts.amendment_notice(version))
            except NoticeRefused as exc:  # say which part of the version is too long, not the notice's
                raise amendment_rules.AmendmentRefused(
                    "notice", f"协议标题（title）或修改摘要（changes）过长，修改通知无法发出：{exc.message}。"
                    f"通知标题为“《{version.title}》修改通知”，正文包含每条修改摘要。",
                ) from None
            try:
                await self._repo.insert(version)
            except VersionExists:
                withdrawn = await self._repo.withdrawal(version.version) is not None
                raise amendment_rules.AmendmentRefused(
                    "immutable",
                    f"版本 {version.version} 曾发布并已撤回，撤回的版本号不能再次使用；请以新的版本号发布" if withdrawn else
                    f"版本 {version.version} 已发布，已发布的版本不可修改；如需更正，请以新的版本号发布",
                ) from None
            self._invalidate()
        after = {"version": version.version, "reason": version.reason, "effective_at": version.effective_at,
                 "published_at": version.published_at, "text_sha256": version.text_sha256}
        return version, await self._tell_everyone(version, title, body, by, ("version_publish", after, address))

    async def withdraw(self, version_id: str, *, reason: str, by: str, address: str = "") -> tuple[AgreementVersion, str]:
        """Withdraw a published version that is not yet in force (e.g. so that a
        legal change can take effect at once without being superseded by it).

        Nothing is retroactive: a version in force, or past, stays. Returns the
        version and the id of the notice telling everyone who was told of it.
        """
        reason = reason.strip()
        async with one_at_a_time(self._locks, "terms:publication"):
            self._invalidate()
            # Before the reason: a second click, or a script run again, is told it
            # is done already, not asked for a reason nor told "no such version".
            withdrawal = await self._repo.withdrawal(version_id)
            if withdrawal is not None:
                raise AlreadyWithdrawn(withdrawal)
            if not reason:
                raise amendment_rules.AmendmentRefused("reason", "请写明撤回的原因（会告知用户）")
            version = await self.get(version_id)
            now = self._clock()
            if version.effective_at <= now:
                raise amendment_rules.AmendmentRefused(
                    "in_force", f"版本 {version.version} 已于 {amendment_rules.show(version.effective_at)}生效，"
                    "已生效的版本不能撤回；如需修改，请发布新的版本",
                )
            amendment_rules.check_withdrawal(version, await self.versions())
            title, body = check_text(_notice_title(f"《{version.title}》修改撤回通知", version), texts.amendment_withdrawn(version, reason))
            if not await self._repo.withdraw(version.version, now, by, reason):  # withdrawn meanwhile (another process)
                raise AlreadyWithdrawn(await self._repo.withdrawal(version.version) or
                                       {"version": version.version, "at": now, "reason": "—"})
            self._invalidate()
        after = {"version": version.version, "reason": reason}
        return version, await self._tell_everyone(version, title, body, by, ("version_withdraw", after, address))

    async def _tell_everyone(self, version: AgreementVersion, title: str, body: str, by: str,
                             audited: tuple[str, dict, str]) -> str:
        """The amendment notice about ``version`` to everyone who accepted any
        version (important), and the audit entry for the change that needs it.

        The change is stored already, so its audit entry is written even when
        the notice fails (then with ``notice: None``)."""
        action, after, address = audited
        notice_id = None
        try:
            notice_id = await self._broadcasts.send(
                category="amendment", title=title, body=body, important=True,
                audience={"type": "consented_any_version"}, by=by, extra={"version": version.version},
            )
        except BaseException:
            # The notice failed: its error is what the admin must see, even if the audit write fails too.
            try:
                await self._record(by, action, version, after, address, None)
            except Exception:  # noqa: BLE001
                log.exception("could not write the audit entry of %s %s", action, version.version)
            raise
        await self._record(by, action, version, after, address, notice_id)
        return notice_id

    async def _record(self, by: str, action: str, version: AgreementVersion, after: dict, address: str,
                      notice_id: str | None) -> None:
        if self._audit is not None:
            await self._audit.record(by, action, version.version, after={**after, "notice": notice_id}, address=address)


def _notice_title(base: str, version: AgreementVersion) -> str:
    """``base`` with the version, when it fits (the console lists many such notices)."""
    titled = f"{base}（版本 {version.version}）"
    return titled if len(titled) <= TITLE_LIMIT else base
