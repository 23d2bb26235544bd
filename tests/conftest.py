"""Shared fixtures: real Valkey and nx-27017 (or REDIS_URL / MONGODB_URI), the
WeChat API emulator, and the service over real HTTP on a free port."""

from __future__ import annotations

import compileall
import contextlib
import dataclasses
import datetime as dt
import os
import urllib.parse
import uuid
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest
from pymongo import AsyncMongoClient
import tornado.httpserver
import tornado.netutil
from tornado.httpclient import AsyncHTTPClient

from emulator.app import EmulatorState, serve as serve_emulator
from handlers.app import make_app, make_server
from service.config import Config
from service.runtime import Runtime
from storage.embedded import EmbeddedServers, free_port
from storage.mongo import MongoUnavailable
from storage.redis_store import PREFIX
from tests.wx import WeChatServer

TOKEN = "testtoken123"
APPID = "wx1234567890test"
SECRET = "test-secret"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers", "storage", "wechat", "emulator", "service", "tests")


def pytest_sessionstart(session) -> None:
    """Byte-compile the project once: many tests start ``wetoop-bot`` processes,
    and where PYTHONDONTWRITEBYTECODE is set (as on CI) each would otherwise
    compile its hundred modules from source again (about 0.4 s a process)."""
    for package in PACKAGES:
        compileall.compile_dir(str(ROOT / package), quiet=1)


@dataclasses.dataclass
class Backing:
    mongodb_uri: str
    redis_url: str
    embedded: EmbeddedServers | None

    def database_uri(self, name: str) -> str:
        """The server's URI naming database ``name``, its options kept
        (``mongodb://h/?replicaSet=rs0`` + a name by concatenation lost the set)."""
        parts = urllib.parse.urlsplit(self.mongodb_uri)
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


@pytest.fixture(scope="session")
def backing(tmp_path_factory) -> Backing:
    """Real servers for the whole run: the environment's, or embedded ones."""
    mongodb_uri = os.environ.get("MONGODB_URI")
    redis_url = os.environ.get("REDIS_URL")
    names = tuple(n for n, url in (("mongo", mongodb_uri), ("redis", redis_url)) if not url)
    embedded = None
    if names:
        embedded = EmbeddedServers(tmp_path_factory.mktemp("backing"), names).start()
        mongodb_uri = mongodb_uri or embedded.url("mongo")
        redis_url = redis_url or embedded.url("redis")
    yield Backing(mongodb_uri, redis_url, embedded)
    if embedded is not None:
        embedded.stop()


@dataclasses.dataclass
class Emulator:
    base: str
    state: EmulatorState

    async def post(self, path: str, body: dict) -> None:
        """POST ``body`` to one of the emulator's control paths (``/_emulator/faults`` …)."""
        import json

        await AsyncHTTPClient().fetch(self.base + path, method="POST", body=json.dumps(body))

    async def clear_faults(self) -> None:
        """Drop every fault injected with ``post("/_emulator/faults", …)``."""
        await AsyncHTTPClient().fetch(self.base + "/_emulator/faults", method="DELETE")

    async def messages(self, touser: str | None = None) -> list[dict]:
        """What the emulator accepted, through its HTTP control API."""
        import json

        url = self.base + "/_emulator/messages" + (f"?touser={touser}" if touser else "")
        response = await AsyncHTTPClient().fetch(url)
        return json.loads(response.body)


@pytest.fixture(scope="session")
async def emulator_server() -> AsyncIterator[Emulator]:
    state = EmulatorState(appid=APPID, secret=SECRET)
    port = free_port()
    server = await serve_emulator("127.0.0.1", port, state)
    yield Emulator(f"http://127.0.0.1:{port}", state)
    server.stop()


@pytest.fixture
async def emulator(emulator_server: Emulator) -> Emulator:
    """The emulator, emptied before each test."""
    await AsyncHTTPClient().fetch(emulator_server.base + "/_emulator/reset", method="POST", body=b"")
    return emulator_server


@dataclasses.dataclass
class Service:
    url: str
    runtime: Runtime
    wechat: WeChatServer
    server: tornado.httpserver.HTTPServer


@pytest.fixture
async def make_service(backing: Backing, emulator: Emulator) -> AsyncIterator[Callable]:
    """A factory: ``await make_service(**config_changes, router=..., deadline=...)``.

    Each test gets an empty database and no keys of ours in Redis.
    """
    database = f"wetoop_test_{uuid.uuid4().hex[:10]}"
    started: list[Service] = []

    async def factory(router=None, deadline: float = 4.5, clock=None, **changes) -> Service:
        values = dict(wechat_token=TOKEN, wechat_appid=APPID, wechat_secret=SECRET, wechat_api_base=emulator.base)
        config = Config(**{**values, **changes})
        extra = {"clock": clock} if clock is not None else {}
        runtime = Runtime(
            config, backing.mongodb_uri, backing.redis_url, database=database, router=router, deadline=deadline, **extra
        )
        if not started:
            await _clear_redis(runtime)
        await runtime.prepare()
        with contextlib.suppress(*MongoUnavailable):  # ready as /healthz counts it; a test may point at no database
            await runtime.answers.prepare()
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server = make_server(make_app(runtime))
        server.add_sockets(sockets)
        url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        service = Service(url, runtime, WeChatServer(url, TOKEN, config.wechat_aes_key, APPID), server)
        started.append(service)
        return service

    yield factory
    for service in started:
        service.server.stop()
        with contextlib.suppress(*MongoUnavailable):  # tests may point at a dead server
            # Buffered writes first: written after the drop, they would
            # recreate the database (and nx-27017 let them land in the next one's).
            await service.runtime.followers.flush()
            await service.runtime.qa_log.flush()
        # Closed first: closing finishes chat in flight and flushes buffers, whose
        # writes after a drop would make the database again (left on a real server).
        await service.runtime.close()
    if started:
        with contextlib.suppress(*MongoUnavailable):
            client = AsyncMongoClient(backing.mongodb_uri, serverSelectionTimeoutMS=2000)
            try:
                await client.drop_database(database)
            finally:
                await client.close()


@pytest.fixture
async def service(make_service) -> Service:
    """The service with the default router, plaintext and AES both accepted."""
    return await make_service(wechat_aes_key=AES_KEY)


async def _clear_redis(runtime: Runtime) -> None:
    keys = [k async for k in runtime.redis.scan_iter(match=PREFIX + "*", count=1000)]
    if keys:
        await runtime.redis.delete(*keys)


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


class FakeClock:
    """A clock tests move by hand: ``clock.advance(days=8)``."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now or dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
