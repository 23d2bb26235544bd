"""Admin accounts of the console: roles, passwords, log-in, sessions.

The permission rule lives in one place, :func:`allowed`: every console route
and every domain action of :mod:`bot.console` asks it. Passwords are hashed
with argon2id (argon2-cffi); hashing and checking are CPU-heavy, so they run in
a worker thread, never on the event loop. Log-in failures are limited per
account and per address (:mod:`storage.login_limits`); after the limit even
the right password is refused until the lock expires.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import re
import secrets
from typing import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.audit import Audit
from bot.errors import BotError
from bot.serial import one_at_a_time
from storage.admin_sessions import AdminSessions
from storage.admin_users import AdminExists, AdminUser, AdminUsers
from storage.locks import UserLocks
from storage.login_limits import LoginLimits

ROLES = {"viewer": "只读", "editor": "编辑", "owner": "所有者"}
_RANK = {"viewer": 1, "editor": 2, "owner": 3}

#: What each permission needs at least.
PERMISSIONS = {
    "read": "viewer",             # every page, the audit log, exports
    "draft": "editor",            # notice and version drafts, previews
    "merchant_review": "editor",  # approve a pending registration
    "qa_edit": "editor",          # lexicon and example questions
    "publish": "owner",           # publish an agreement version
    "broadcast": "owner",         # send, pause, resume, cancel notices
    "merchant_suspend": "owner",  # suspend, reinstate, close merchants
    "manage_admins": "owner",
}

#: Held while a change could leave no enabled owner (bot.serial).
OWNERS_LOCK = "admin:owners"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{2,32}$")
#: Names records already give to others: the command line (``cli``) and the
#: merchant themself (``user``). An admin named so would read as them in the
#: audit log and a merchant's history.
RESERVED_NAMES = frozenset(("cli", "user"))
MIN_PASSWORD = 10
MAX_PASSWORD = 128
_hasher = PasswordHasher()
@functools.cache
def _dummy_hash() -> str:
    """Checked when the name is unknown, so a wrong name costs as long as a wrong
    password. Made on first use: at import it cost every CLI command 0.2 s."""
    return _hasher.hash(secrets.token_urlsafe(16))


def allowed(role: str | None, permission: str) -> bool:
    """Whether ``role`` may do ``permission`` (see :data:`PERMISSIONS`)."""
    return _RANK.get(role or "", 0) >= _RANK[PERMISSIONS[permission]]


class AdminRefused(BotError):
    kind = "bad_request"
    code = "admin_refused"


class NoAdmin(AdminRefused):
    """No admin account of that name."""

    kind = "not_found"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="no_admin")


class Forbidden(BotError):
    kind = "forbidden"
    code = "forbidden"


def _masked(name: str) -> str:
    """An unknown log-in name as the audit log keeps it: its first two characters and its length."""
    return f"{name[:2]}…（{len(name)} 个字符）" if len(name) > 2 else name


class LoginFailed(BotError):
    kind = "unauthenticated"
    code = "login_failed"


class LoginLocked(BotError):
    kind = "too_many"
    code = "login_locked"

    def __init__(self, seconds: int) -> None:
        minutes = max(1, (seconds + 59) // 60)
        super().__init__(f"登录失败次数过多，已暂时锁定。请在 {minutes} 分钟后再试。")
        self.seconds = seconds


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who acts: an admin's name and role, and the address they came from."""

    name: str
    role: str
    address: str = ""

    @property
    def recorded_as(self) -> str:
        """Who a change is recorded as in a record's history: ``admin:NAME`` for
        the console, the CLI's own name (``cli``, ``cli:NAME``) for the command line."""
        return self.name if self.name == "cli" or self.name.startswith("cli:") else f"admin:{self.name}"

    def require(self, permission: str) -> None:
        if not allowed(self.role, permission):
            need = ROLES[PERMISSIONS[permission]]
            raise Forbidden(f"没有权限：此操作需要“{need}”角色，您的角色是“{ROLES.get(self.role, self.role)}”。")


#: The actor of commands typed on the server (they have shell access already).
CLI = Actor("cli", "owner", "localhost")


def generate_password(name: str = "") -> str:
    """A random password good enough for a first log-in (demo, CLI without a
    prompt), for the admin ``name``: one that the policy takes."""
    while True:
        password = secrets.token_urlsafe(12)
        try:
            _check_password(password, name)
        except AdminRefused:  # by chance the name in it, or too few different characters
            continue
        return password


class AdminAccounts:
    """Accounts, log-in and sessions of the admin console."""

    def __init__(self, users: AdminUsers, sessions: AdminSessions, limits: LoginLimits, audit: Audit,
                 clock: Callable[[], dt.datetime], locks: UserLocks | None = None) -> None:
        self._locks = locks
        self.users = users
        self.sessions = sessions
        self.limits = limits
        self._audit = audit
        self._clock = clock

    async def create(self, name: str, role: str, password: str, by: Actor = CLI) -> AdminUser:
        """Create an admin. Raises :class:`AdminRefused` for a bad name, role,
        short password or an existing name."""
        by.require("manage_admins")
        name = name.strip()
        if not NAME_PATTERN.match(name):
            raise AdminRefused("用户名须为 2 到 32 位英文字母、数字或 _ . -", code="bad_name")
        if name.casefold() in RESERVED_NAMES:
            raise AdminRefused(f"用户名 {name} 是保留名称（审计日志中 cli 表示命令行操作，user 表示商家本人），请换一个", code="bad_name")
        _check_role(role)
        _check_password(password, name)
        # Log-in limits count a name case-blind: "VI" beside "vi" would share
        # their lock, and the audit log would show two look-alike actors.
        same = next((u.name for u in await self.users.list() if u.name.casefold() == name.casefold()), None)
        if same is not None:
            raise AdminRefused(f"管理员 {same} 已存在" + ("" if same == name else "（用户名不区分大小写）"),
                               code="admin_exists")
        digest = await asyncio.to_thread(_hasher.hash, password)
        try:
            await self.users.create(name, role, digest, self._clock(), by.name)
        except AdminExists:
            raise AdminRefused(f"管理员 {name} 已存在", code="admin_exists") from None
        user = await self._get(name)
        await self._audit.record(by.name, "admin_create", name, after=user.public(), address=by.address)
        return user

    async def create_or_reset(self, name: str, role: str, password: str, by: Actor = CLI) -> AdminUser:
        """Create ``name``, or give an existing admin of that name this role and
        password (and enable it): what ``wetoop-bot demo`` needs on every start."""
        try:
            return await self.create(name, role, password, by=by)
        except AdminRefused as exc:
            if exc.code != "admin_exists":
                raise
        await self.set_password(name, password, by=by)
        if (await self._get(name)).disabled:
            await self.set_disabled(name, False, by=by)
        if (await self._get(name)).role != role:
            await self.set_role(name, role, by=by)
        return await self._get(name)

    async def list(self) -> list[AdminUser]:
        return await self.users.list()

    async def authenticate(self, name: str, password: str, address: str,
                           device: str | None = None) -> tuple[AdminUser, str, str]:
        """Check a log-in; returns the admin, a new session token and the id of
        the device (browser) to remember.

        Raises :class:`LoginLocked` (too many attempts) while the account or address is
        locked, even for the right password, and :class:`LoginFailed` for a
        wrong name or password (one message for both). ``device``: the id this
        browser got at an earlier log-in of ``name`` (from a signed cookie); its
        attempts are counted apart, so a lock-out caused by others' guessing
        does not lock the admin out of their own browser.
        """
        name = name.strip()
        wait = await self.limits.attempt(name, address, device)
        if wait:
            raise LoginLocked(wait)
        user = await self.users.get(name) if NAME_PATTERN.match(name) else None
        ok = await asyncio.to_thread(lambda: _verify(user.password_hash if user else _dummy_hash(), password))
        if user is None or not ok or user.disabled:
            # A name no account has is often a password typed in the wrong box: only its start is kept.
            shown = name if user else _masked(name)
            await self._audit.record(shown if user else f"?{shown}", "login_failed", shown, address=address)
            raise LoginFailed("用户名或密码不正确，或账户已停用。")
        await self.limits.succeeded(name, address, device)
        token = await self.sessions.create(user.name, address)
        await self._audit.record(user.name, "login", user.name, address=address)
        return user, token, device or secrets.token_urlsafe(16)

    async def session_user(self, token: str, touch: bool = True) -> AdminUser | None:
        """The admin behind a session token, if the session and the admin are
        live; ``touch``: the request is the admin's doing, and the session's
        idle expiry restarts."""
        session = await self.sessions.get(token, touch)
        if session is None:
            return None
        user = await self.users.get(session.name)
        if user is None or user.disabled:
            await self.sessions.revoke(token)
            return None
        return user

    async def logout(self, token: str, by: Actor) -> None:
        await self.sessions.revoke(token)
        await self._audit.record(by.name, "logout", by.name, address=by.address)

    async def set_role(self, name: str, role: str, by: Actor) -> AdminUser:
        by.require("manage_admins")
        _check_role(role)
        async with one_at_a_time(self._locks, OWNERS_LOCK):  # two owners demoting each other
            user = await self._get(name)
            if user.role == "owner" and role != "owner":
                await self._keep_an_owner(name)
            await self.users.update(name, self._clock(), role=role)
        after = await self._get(name)
        await self._audit.record(by.name, "admin_role", name, before=user.public(), after=after.public(), address=by.address)
        return after

    async def set_disabled(self, name: str, disabled: bool, by: Actor) -> AdminUser:
        """Disable (and log out) or re-enable an admin."""
        by.require("manage_admins")
        async with one_at_a_time(self._locks, OWNERS_LOCK):  # two owners disabling each other
            user = await self._get(name)
            if disabled and user.role == "owner":
                await self._keep_an_owner(name)
            await self.users.update(name, self._clock(), disabled=disabled)
        if disabled:
            await self.sessions.revoke_all(name)
        after = await self._get(name)
        action = "admin_disable" if disabled else "admin_enable"
        await self._audit.record(by.name, action, name, before=user.public(), after=after.public(), address=by.address)
        return after

    async def set_password(self, name: str, password: str, by: Actor) -> None:
        """A new password; the admin's sessions end."""
        by.require("manage_admins")
        _check_password(password, name)
        await self._get(name)
        digest = await asyncio.to_thread(_hasher.hash, password)
        await self.users.update(name, self._clock(), password_hash=digest)
        await self.sessions.revoke_all(name)
        await self.limits.clear_account(name)  # a lock-out from guessing the old one ends
        await self._audit.record(by.name, "admin_password", name, address=by.address)

    async def revoke_sessions(self, name: str, by: Actor) -> int:
        """End every session of ``name``; returns how many were live."""
        if by.name != name:
            by.require("manage_admins")
        await self._get(name)
        count = await self.sessions.revoke_all(name)
        await self._audit.record(by.name, "admin_revoke_sessions", name, after={"revoked": count}, address=by.address)
        return count

    async def _get(self, name: str) -> AdminUser:
        user = await self.users.get(name)
        if user is None:
            raise NoAdmin(f"没有名为 {name} 的管理员")
        return user

    async def _keep_an_owner(self, name: str) -> None:
        owners = [u for u in await self.users.list() if u.role == "owner" and not u.disabled and u.name != name]
        if not owners:
            raise AdminRefused("至少要保留一位启用中的所有者", code="last_owner")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AdminRefused(f"未知的角色 {role}，可选：{'、'.join(f'{k}（{v}）' for k, v in ROLES.items())}", code="bad_role")


def _check_password(password: str, name: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AdminRefused(f"密码至少需要 {MIN_PASSWORD} 个字符", code="weak_password")
    if len(password) > MAX_PASSWORD:  # the forms cut at 1,024: a longer one was stored cut, unlike what was typed
        raise AdminRefused(f"密码最多 {MAX_PASSWORD} 个字符，您输入了 {len(password)} 个", code="long_password")
    # The first guesses of anyone who knows the name (aaaaaaaaaa, alicealice, alice12345).
    if len(set(password)) < 4:
        raise AdminRefused("密码过于简单：至少需要 4 个不同的字符", code="weak_password")
    # Names of three letters and more (bob, amy); two (li) are in too many good passwords.
    folded = name.casefold()
    if folded == password.casefold() or (len(folded) >= 3 and folded in password.casefold()):
        raise AdminRefused("密码不能包含用户名", code="weak_password")


def _verify(digest: str, password: str) -> bool:
    try:
        return _hasher.verify(digest, password)
    except (VerificationError, InvalidHashError):
        return False
