"""``wetoop-bot demo`` as a newcomer runs it (``make run``): one real process
with its embedded servers, the emulator, the worker and the simulator; Ctrl-C
stops all of it."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient

from service.cli import DEMO_TEMPLATES
from storage.embedded import free_port
from tests.test_admin import AdminClient
from tests.test_cli import BIN, Running, alive, clean_env, descendants, wait_dead
from wechat.menu import load_menu


async def api(method: str, url: str, body=None):
    response = await AsyncHTTPClient().fetch(
        url, method=method, body=None if body is None else json.dumps(body, ensure_ascii=False).encode(),
        raise_error=False, headers={"Content-Type": "application/json"},
    )
    return response.code, json.loads(response.body)


async def read_banner(demo: Running, timeout: float = 30) -> str:
    banner = ""
    deadline = time.monotonic() + timeout
    while "Ctrl-C" not in banner and time.monotonic() < deadline:
        line = await asyncio.to_thread(demo.proc.stdout.readline)
        if not line:
            break
        banner += line
    assert "Ctrl-C" in banner, banner
    return banner


async def test_demo_runs_everything_and_ctrl_c_stops_it_all(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    demo = Running(["demo", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path)], {})
    try:
        banner = await read_banner(demo)
        # Announced once ready: the banner came while /healthz still said 503 "starting".
        ready = await AsyncHTTPClient().fetch(base + "/healthz", raise_error=False)
        assert ready.code == 200, ready.body
        assert f"{base}/simulator" in banner and f"{base}/admin" in banner
        assert str(tmp_path) in banner and "已推送 data/menu.json" in banner

        # The demo admin's password is printed once, and it opens the console.
        found = re.search(r"用户名：(\S+?)，密码：(\S+?)，", banner)
        assert found, banner
        admin = AdminClient(base)
        response = await admin.login(found.group(1), found.group(2))
        assert response.code == 303 and response.headers["Location"] == "/admin"
        assert "概览" in (await admin.get("/admin")).body.decode()

        page = await AsyncHTTPClient().fetch(base + "/simulator")
        assert "聊天模拟器" in page.body.decode()
        # The menu was pushed to the emulator at start, and the page shows that one.
        code, state = await api("GET", base + "/simulator/api/state")
        assert code == 200 and state["menu_source"] == "wechat" and state["menu"] == load_menu()
        assert state["safe_mode_available"] is True

        code, user = await api("POST", base + "/simulator/api/users", {"nickname": "演示用户"})
        openid = user["openid"]
        code, welcome = await api("POST", base + "/simulator/api/send", {"openid": openid, "kind": "subscribe", "mode": "safe"})
        assert code == 200 and welcome["reply"].startswith("欢迎关注微拓"), welcome

        # A notice sent from another process reaches the user through the
        # demo's worker and the emulator, and the simulator lists it.
        proc = await asyncio.create_subprocess_exec(
            str(BIN), "notice", "send", "--data-dir", str(tmp_path), "--category", "security",
            "--title", "安全提醒", "--body", "请勿向任何人透露验证码。",
            env=clean_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        listed: list = []
        deadline = time.monotonic() + 20
        while not listed and time.monotonic() < deadline:
            code, listed = await api("GET", f"{base}/simulator/api/messages?openid={openid}&since=0")
            await asyncio.sleep(0.2)
        # Security notices go as template messages in the demo (data/demo-templates.json).
        assert listed and listed[0]["label"] == "模板消息" and "安全提醒" in listed[0]["text"], listed

        # Commands that talk to WeChat use the running demo's account and emulator.
        proc = await asyncio.create_subprocess_exec(
            str(BIN), "menu", "show", "--data-dir", str(tmp_path),
            env=clean_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert load_menu()["button"][0]["name"] in out.decode()

        # A second demo on the same data directory is refused and touches nothing: it
        # used to reset the first one's password and remove its settings file.
        proc = await asyncio.create_subprocess_exec(
            str(BIN), "demo", "--port", str(free_port()), "--data-dir", str(tmp_path),
            env=clean_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 2 and "已有一个演示环境在运行" in err.decode(), err.decode()
        assert (tmp_path / "run" / "demo-wechat.json").exists()
        again = AdminClient(base)
        assert (await again.login(found.group(1), found.group(2))).code == 303  # the printed password still works

        family = descendants(demo.proc.pid)
        assert len(family) >= 2  # nx-27017 and Valkey at least
        started = time.monotonic()
        assert await demo.stop(signal.SIGINT) == 0
        assert time.monotonic() - started < 10
        await wait_dead(family)
        assert not any(alive(pid) for pid in family)
        assert not (tmp_path / "run" / "embedded.json").exists()
        assert not (tmp_path / "run" / "demo-wechat.json").exists()
    finally:
        demo.kill()


def test_demo_bad_flags_exit_2(tmp_path):
    import subprocess

    for args in (["--port", "http"], ["--port", "70000"], ["--no-such-flag"]):
        result = subprocess.run(
            [str(BIN), "demo", *args, "--data-dir", str(tmp_path)], env=clean_env(), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_demo_refuses_to_run_on_the_services_databases(tmp_path, backing):
    # Run in a shell with the production settings loaded, the demo made its
    # owner account in the real database and its worker took the real notices.
    import subprocess

    env = {"MONGODB_URI": backing.database_uri("wetoop_demo_refused"), "REDIS_URL": backing.redis_url}
    result = subprocess.run([str(BIN), "demo", "--port", str(free_port()), "--data-dir", str(tmp_path / "d")],
                            env=clean_env(**env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "演示环境只使用内置数据库" in result.stderr, result.stderr
    assert "MONGODB_URI、REDIS_URL" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "d").exists()  # nothing made, nothing started


async def test_demo_refuses_a_port_in_use(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            str(BIN), "demo", "--port", str(port), "--data-dir", str(tmp_path),
            env=clean_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert re.search(r"无法监听 127\.0\.0\.1:\d+", err.decode()), err.decode()


def test_a_settings_file_left_by_a_killed_demo_does_not_block_the_next(tmp_path):
    # Its pid may now belong to another process: that is no running demo.
    import os

    from service.clitools import running_demo_pid

    run = tmp_path / "run"
    run.mkdir()
    (run / "demo-wechat.json").write_text(json.dumps({"pid": os.getppid()}), encoding="utf-8")  # alive, no demo
    assert running_demo_pid(tmp_path) is None


def _demo_settings_file(data_dir, pid: int, written_in=None) -> None:
    run = data_dir / "run"
    run.mkdir(exist_ok=True)
    (run / "demo-wechat.json").write_text(json.dumps({
        "pid": pid, "data_dir": str((written_in or data_dir).resolve()), "wechat_token": "wetoopdemo",
        "wechat_appid": "wxd0000000000demo", "wechat_secret": "demo", "wechat_api_base": "http://127.0.0.1:9",
        "notice_templates": str(DEMO_TEMPLATES), "notice_rate": 10.0,
    }), encoding="utf-8")


def _config(monkeypatch, data_dir, **environ):
    import argparse

    from service.clitools import load_config

    for key in ("WECHAT_TOKEN", "WECHAT_APPID", "WECHAT_SECRET", "WECHAT_AES_KEY", "WECHAT_API_BASE", "WETOOP_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    return load_config(argparse.Namespace(config=None, host=None, port=None, data_dir=str(data_dir)))


def test_a_service_takes_a_running_demos_wechat_settings_only_when_it_has_none(tmp_path, monkeypatch):
    # `serve` on a data directory with the file of a demo killed long ago
    # (its pid now another process's) signed pushes with the demo's published
    # Token, and did so even with the operator's own WECHAT_TOKEN set.
    import os
    import subprocess
    import sys

    _demo_settings_file(tmp_path, os.getppid())  # alive, no demo
    assert _config(monkeypatch, tmp_path).wechat_token is None
    # A running demo (a process started as one, standing in for it here).
    demo = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "wetoop-bot", "demo"])
    try:
        # Popen returns when the exec began; the kernel fills the command line
        # in a moment later (read empty once, under load).
        cmdline, deadline = Path(f"/proc/{demo.pid}/cmdline"), time.monotonic() + 10
        while b"demo" not in cmdline.read_bytes().split(b"\0") and time.monotonic() < deadline:
            time.sleep(0.01)
        _demo_settings_file(tmp_path, demo.pid)
        joined = _config(monkeypatch, tmp_path)
        assert joined.wechat_token == "wetoopdemo"  # a CLI command beside the demo
        # ... sends its notices as the demo does (a worker sent security notices without its templates).
        assert (joined.notice_templates, joined.notice_rate) == (str(DEMO_TEMPLATES), 10.0)
        given = _config(monkeypatch, tmp_path, WECHAT_TOKEN="prodToken123")
        assert (given.wechat_token, given.wechat_appid) == ("prodToken123", None)
        # The file copied from another data directory, whose demo still runs.
        _demo_settings_file(tmp_path, demo.pid, written_in=tmp_path / "elsewhere")
        assert _config(monkeypatch, tmp_path).wechat_token is None
    finally:
        demo.kill()
        demo.wait()
