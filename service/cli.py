"""The ``wetoop-bot`` command.

``serve`` runs the service, ``emulator`` the WeChat API emulator, ``demo``
both on the embedded default. Bad arguments or configuration print one line
and exit with code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import secrets
import socket
import sys
from pathlib import Path

import pymongo.errors
import redis
import tornado.netutil

from bot.errors import BotError
from bot.file_problems import os_problem
from service import cli_admin, cli_data, cli_followers, cli_menu, cli_merchants, cli_notices, cli_qa, supervisor
from service.clitools import (
    UsageError, add_data_dir_flag, add_global_flags_everywhere, data_dir_path, load_config, positive_int,
    speak_chinese_in_argparse, make_data_dir, remove_demo_settings, running_demo_pid, start_embedded, write_demo_settings,
)
from service.config import Config, ConfigError, file_value
from storage.embedded import EmbeddedError
from storage.mongo import MongoUnavailable, brief

log = logging.getLogger("wetoop_bot")

#: Credentials the demo uses unless the environment gives others.
DEMO_TOKEN = "wetoopdemo"
DEMO_APPID = "wxd0000000000demo"
DEMO_MINIPROGRAM_APPID = "wxd00000000mpdemo"
#: The demo's admin console account (owner); its password is random per start.
DEMO_ADMIN = "demo"
#: The demo's EncodingAESKey (safe mode in the simulator); published, so never for a real account.
DEMO_AES_KEY = "WetoopDemoEncodingAESKey0123456789abcdefghi"
#: The demo's NOTICE_TEMPLATES unless the environment gives one.
DEMO_TEMPLATES = Path(__file__).resolve().parent.parent / "data" / "demo-templates.json"


def main(argv: list[str] | None = None) -> int:
    speak_chinese_in_argparse()
    parser = _parser()
    args = parser.parse_args(argv)
    level = _log_level(args.verbose, getattr(args, "config", None))
    logging.basicConfig(
        level=level,
        # The pid: with --processes N each worker's lines are told apart.
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    for library in QUIET_LIBRARIES:
        # At DEBUG they log what must not reach a log: URLs with access tokens and
        # AppSecrets (urllib3), every command with its documents (PyMongo).
        logging.getLogger(library).setLevel(max(level, logging.INFO))
    try:
        return args.func(args) or 0
    except (ConfigError, UsageError) as exc:
        print(f"wetoop-bot: {exc}", file=sys.stderr)
        return 2
    except BotError as exc:
        print(f"wetoop-bot: {exc.message}", file=sys.stderr)
        return 2
    except EmbeddedError as exc:
        print(f"wetoop-bot: {exc}", file=sys.stderr)
        return 1
    except pymongo.errors.ConfigurationError as exc:  # e.g. a mongodb+srv:// name that does not resolve
        print(f"wetoop-bot: MONGODB_URI 无法使用：{brief(exc)}", file=sys.stderr)
        return 2
    except MongoUnavailable as exc:
        print(f"wetoop-bot: 无法连接 MongoDB：服务器没有响应（未启动、被暂停或 MONGODB_URI 有误）。详情：{brief(exc)}", file=sys.stderr)
        return 1
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        cause = "服务器没有响应（被暂停或过载）" if isinstance(exc, redis.TimeoutError) else "连接被拒绝或中断（未启动或 REDIS_URL 有误）"
        print(f"wetoop-bot: 无法连接 Redis：{cause}。详情：{exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as a program killed
        # by SIGPIPE would, and keep Python from complaining about stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wetoop-bot", description="微拓公众号与小程序后端")
    parser.add_argument("--config", help="TOML 配置文件（环境变量优先）")
    parser.add_argument("-v", "--verbose", action="store_true", help="输出更多日志")
    parser.add_argument("--data-dir", type=data_dir_path, help="数据目录（默认 DATA_DIR 或 ./var）")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="启动服务")
    _service_flags(serve)
    serve.add_argument("--processes", type=positive_int, default=1, help="工作进程数（默认 1）")
    serve.add_argument("--no-worker", action="store_true", help="不在服务进程内发送通知（另行运行 wetoop-bot worker）")
    serve.set_defaults(func=cmd_serve)

    emulator = sub.add_parser("emulator", help="启动微信 API 模拟器（测试与演示用）")
    emulator.add_argument("--host", default="127.0.0.1", help="监听地址（默认 127.0.0.1）")
    emulator.add_argument("--port", type=_port, default=8081, help="监听端口（默认 8081；0 表示任选空闲端口）")
    emulator.add_argument("--rate-limit", type=_rate, default=None, help="每秒最多接受的消息数，超出返回 45009")
    emulator.add_argument("--appid", help="只接受这个 AppID（默认接受任何）")
    emulator.add_argument("--secret", help="只接受这个 AppSecret（默认接受任何）")
    emulator.set_defaults(func=cmd_emulator)

    demo = sub.add_parser("demo", help="演示环境：服务 + 内置数据库 + 微信 API 模拟器 + 聊天模拟器 + 管理后台")
    _service_flags(demo)
    demo.set_defaults(func=cmd_demo)

    cli_data.register(sub)
    cli_qa.register(sub)
    cli_merchants.register(sub)
    cli_notices.register(sub)
    cli_admin.register(sub)
    cli_menu.register(sub)
    cli_followers.register(sub)
    add_global_flags_everywhere(parser)
    return parser


def _service_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="监听地址（默认 HOST 或 127.0.0.1）")
    parser.add_argument("--port", type=_port, help="监听端口（默认 PORT 或 8080）")
    add_data_dir_flag(parser)


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"必须是正数（每秒的消息数）：{text!r}") from None
    if not 0 < value < float("inf"):  # 0 or less would refuse every message; nan fails this too
        raise argparse.ArgumentTypeError(f"必须是正数（每秒的消息数）：{text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"端口必须是整数：{text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"端口必须在 0 到 65535 之间：{value}")
    return value


#: LOG_LEVEL's values (-v is INFO).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Libraries kept at INFO when LOG_LEVEL is DEBUG (see main).
QUIET_LIBRARIES = ("urllib3", "pymongo", "asyncio")


def _log_level(verbose: bool, toml_path: str | None = None) -> int:
    """-v, else LOG_LEVEL of the environment or the TOML file (a wrong value is
    said and WARNING used), else WARNING."""
    if verbose:
        return logging.INFO
    named = (os.environ.get("LOG_LEVEL") or file_value("LOG_LEVEL", toml_path) or "").strip().upper()
    if named in LOG_LEVELS:
        return getattr(logging, named)
    if named:
        print(f"wetoop-bot: LOG_LEVEL 必须是 {'、'.join(LOG_LEVELS)} 之一，收到的是 {named!r}；使用 WARNING",
              file=sys.stderr)
    return logging.WARNING


# -- serve ----------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    config = load_config(args)
    if not config.wechat_token:
        log.warning("未设置 WECHAT_TOKEN：设置之前 /wechat 一律回答 503")
    if not config.public_url and (config.mongodb_uri or not _local(config.host)):
        # Behind nginx the service cannot know the address users reach it at.
        log.warning("未设置 PUBLIC_URL：发给用户的链接（如“导出我的数据”）将指向 %s，公网用户无法打开；"
                    "请设置为用户访问的地址，如 https://bot.example.com", config.base_url)
    if not config.cookie_secret and config.mongodb_uri:
        # External databases mean a host of several, perhaps: each would make its own.
        log.warning("未设置 COOKIE_SECRET：使用本机生成的密钥（%s）；多台主机运行时请为每台设置相同的 COOKIE_SECRET，"
                    "否则在一台主机登录的管理后台、生成的导出链接在其他主机上无效",
                    Path(config.data_dir) / "run" / "cookie_secret")
    if config.safe_mode and not config.wechat_appid:
        # WeChat's encrypted envelope ends with the AppID, checked on every push.
        log.warning("设置了 WECHAT_AES_KEY 却未设置 WECHAT_APPID：加密推送将被拒绝（%s）",
                    "安全模式又拒绝明文推送：任何推送都不会被接受" if config.encrypt_mode == "safe"
                    else "明文推送仍可使用")
    return _run_service(config, processes=args.processes, with_worker=not args.no_worker)


def _run_service(
    config: Config, processes: int = 1, emulator_port: int | None = None, banner=None, with_worker: bool = True,
    ready=None,
) -> int:
    """Serve until SIGINT/SIGTERM. ``ready(runtime)``, if given, is awaited once
    the service listens, before ``banner(port)`` (the demo pushes its menu)."""
    sockets = _bind(config, reuse_port=processes > 1 and supervisor.REUSE_PORT)
    port = sockets[0].getsockname()[1]
    embedded = start_embedded(config)
    try:
        mongodb_uri = config.mongodb_uri or embedded.url("mongo")
        redis_url = config.redis_url or embedded.url("redis")

        async def worker(socks: list[socket.socket], stop: asyncio.Event) -> None:
            await _serve_until(
                config, mongodb_uri, redis_url, socks, stop, emulator_port, banner, port, with_worker, ready
            )

        # Embedded servers that die, or that the process they were attached from
        # stops, are started again on their ports (production uses MONGODB_URI /
        # REDIS_URL, which this leaves alone).
        return supervisor.run(worker, sockets, processes, tick=embedded.revive if embedded.running else None,
                              refused=(ConfigError,))
    finally:
        embedded.stop()


def _bind(config: Config, reuse_port: bool = False) -> list[socket.socket]:
    try:
        if reuse_port and config.port:
            # SO_REUSEPORT would let a second service (an old one still
            # running) share the port silently: first make sure it is free.
            for probe in tornado.netutil.bind_sockets(config.port, config.host):
                probe.close()
        return tornado.netutil.bind_sockets(config.port, config.host, reuse_port=reuse_port)
    except OSError as exc:
        raise UsageError(f"无法监听 {config.host}:{config.port}：{os_problem(exc)}") from None


#: How long a stopping service lets requests in flight finish (WeChat waits 5 s for a reply).
DRAIN_SECONDS = 6.0

#: Sending tasks of the worker inside ``serve``. Few: they share the event loop
#: with /wechat, and bursts of replies from many sends in flight hold up
#: messages. 6: with 2 the sending waited on its own round trips with a
#: quarter of the 2 cores idle (1,025 msg/s); 4 filled them better (1,261
#: msg/s, /wechat p99 28 ms). Since the rate limit keeps every second under
#: WeChat's limit (no more sending tasks backing off together after 45009), 6
#: send faster than 4 (100,000 recipients, interleaved: 1,528 and 1,555 msg/s
#: against 1,429 and 1,518; /wechat p99 27-31 ms against 20-26) and 8 no
#: faster than 6 (p99 35 ms; ``bench/RESULTS-broadcast.md``). `wetoop-bot
#: worker` processes run 8.
IN_PROCESS_SENDERS = 6
#: Seconds the start-up banner waits for the Q&A index (it says the service is ready).
STARTING_WAIT = 10.0


async def _serve_until(
    config, mongodb_uri, redis_url, sockets, stop, emulator_port, banner, port, with_worker, ready=None
) -> None:
    from emulator.app import EmulatorState, serve as serve_emulator
    from handlers.app import make_app, make_server
    from service.runtime import Runtime

    emulator_server = None
    if emulator_port is not None:
        state = EmulatorState(appid=config.wechat_appid, secret=config.wechat_secret)
        emulator_server = await serve_emulator("127.0.0.1", emulator_port, state)
    runtime = Runtime(config, mongodb_uri, redis_url)
    runtime.broadcasts.plan_in_background = True  # the console answers at once; this process lives on
    # The WeChat client's HTTP library, imported in a thread now: imported at the first send
    # (a late reply, a notice) it held the event loop, and every /wechat in flight, a quarter second.
    warming = asyncio.ensure_future(asyncio.to_thread(importlib.import_module, "aiohttp"))
    await runtime.prepare()
    settling = asyncio.create_task(runtime.freeze_start_up_objects())
    app = make_app(runtime)
    server = make_server(app, config.trust_proxy)
    server.add_sockets(sockets)
    worker_stop = asyncio.Event()
    if with_worker and runtime.wechat is None:
        # A worker without an account could only record every send as failed.
        if supervisor.first_worker():
            log.warning("未设置 WECHAT_APPID/WECHAT_SECRET：通知会一直排队，直到有配置了公众号的 worker 运行"
                        "（wetoop-bot worker）")
        with_worker = False
    worker = asyncio.create_task(runtime.worker(IN_PROCESS_SENDERS).run(worker_stop)) if with_worker else None
    # Said once by a service of several processes (they share the account).
    checking = asyncio.create_task(runtime.check_wechat()) if supervisor.first_worker() else None
    views = asyncio.create_task(runtime.keep_up(worker_stop))
    if ready is not None:
        await ready(runtime)
    # Announced once /healthz says ready (the Q&A index built, about half a
    # second), not while it still answers 503 "starting".
    await asyncio.wait({settling}, timeout=STARTING_WAIT)
    if not supervisor.first_worker():
        pass  # worker 0 announces the service
    elif banner is not None:
        banner(port)
    else:
        print(f"wetoop-bot 已启动：http://{_display_host(config.host)}:{port}/", flush=True)
    await stop.wait()
    if checking is not None:
        checking.cancel()  # WeChat not answering must not hold the stop
    await asyncio.gather(settling, warming, *filter(None, [checking]), return_exceptions=True)
    server.stop()
    # Requests being answered and the worker's sends in flight finish side by
    # side (each within its own grace), not one after the other: in sequence
    # the worst case outlasted the supervisor's wait (supervisor.STOP_WAIT).
    worker_stop.set()
    if not await app.drained(DRAIN_SECONDS):
        log.warning("%d requests still unanswered after %s s; closing their connections", app.in_flight, DRAIN_SECONDS)
    if worker is not None:
        await worker
    views.cancel()  # a first catch-up may replay a large ledger; nothing is lost by stopping it
    await asyncio.gather(views, return_exceptions=True)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.close_all_connections(), 3)
    await runtime.close()
    if emulator_server is not None:
        emulator_server.stop()


def _local(host: str) -> bool:
    """Whether the service listens on this machine only (a demo or a service behind nginx here)."""
    return host in ("127.0.0.1", "::1", "localhost")


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


# -- emulator --------------------------------------------------------------


def cmd_emulator(args: argparse.Namespace) -> int:
    from emulator.app import EmulatorState, serve as serve_emulator

    async def run() -> None:
        state = EmulatorState(appid=args.appid, secret=args.secret, rate_limit=args.rate_limit)
        try:
            server = await serve_emulator(args.host, args.port, state)
        except OSError as exc:
            raise UsageError(f"无法监听 {args.host}:{args.port}：{os_problem(exc)}") from None
        # --port 0: the port the system chose, which is where it can be reached.
        print(f"微信 API 模拟器已启动：http://{_display_host(args.host)}:{server.bound_port}/", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (2, 15):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        server.stop()

    supervisor.run_loop(run())
    return 0


# -- demo -------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """Everything a newcomer needs on a laptop: the service on the embedded
    databases, an in-process WeChat API emulator, the in-process notice worker,
    the chat simulator (with the menu of ``data/menu.json`` pushed at start) and
    the admin console. Ctrl-C stops all of it, the embedded servers included."""
    config = load_config(args)
    given = [name for name, value in (("MONGODB_URI", config.mongodb_uri), ("REDIS_URL", config.redis_url)) if value]
    if given:
        # In a shell with the service's settings loaded, the demo made its
        # owner account in the real database and its worker took the real
        # notices, "sending" them to its own emulator.
        raise UsageError(
            f"演示环境只使用内置数据库，但当前设置了 {'、'.join(given)}（服务的生产配置？）："
            "请在没有加载服务配置的终端中运行（或先 unset " + " ".join(given) + "），且不要用 --config 指定服务的配置文件。"
        )
    make_data_dir(config)
    other = running_demo_pid(config.data_dir)
    if other is not None:
        # A second demo would share the databases, reset the first one's admin
        # password and overwrite its settings: refuse, and touch nothing.
        raise UsageError(
            f"数据目录 {Path(config.data_dir).resolve()} 上已有一个演示环境在运行（进程 {other}）："
            "请先停止它（Ctrl-C），或用 --data-dir 指定另一个目录"
            f"（如确认没有演示环境在运行，可删除 {Path(config.data_dir).resolve() / 'run' / 'demo-wechat.json'}）。"
        )
    emulator_port = _free_port()
    config = config.replace(
        wechat_token=config.wechat_token or DEMO_TOKEN,
        wechat_appid=config.wechat_appid or DEMO_APPID,
        wechat_secret=config.wechat_secret or secrets.token_hex(16),
        # A fixed, published key: the demo's pushes are not secret, and a
        # stable key lets people decrypt what they capture between restarts.
        wechat_aes_key=config.wechat_aes_key or DEMO_AES_KEY,
        wechat_api_base=f"http://127.0.0.1:{emulator_port}",
        simulator=True,
        # The mini-program API logs in through the emulator's jscode2session.
        miniprogram_appid=config.miniprogram_appid or DEMO_MINIPROGRAM_APPID,
        miniprogram_secret=config.miniprogram_secret or secrets.token_hex(16),
        # Security and amendment notices go as template messages (the emulator
        # takes any template id), the others as customer-service messages: the
        # simulator shows both kinds, and a follower outside the 48 hours still
        # gets the important ones.
        notice_templates=config.notice_templates or str(DEMO_TEMPLATES),
    )
    menu_state = {"text": "未推送"}
    admin = {"name": DEMO_ADMIN, "password": ""}

    async def ready(runtime) -> None:
        from bot.admin_accounts import generate_password
        from wechat.api import WeChatAPIError
        from wechat.menu import DEFAULT_MENU, MenuFileError, load_menu

        # A fresh random password at every start, printed once in the banner.
        admin["password"] = generate_password(DEMO_ADMIN)
        await runtime.admins.create_or_reset(DEMO_ADMIN, "owner", admin["password"])
        await runtime.admins.limits.clear_all()  # a lock-out from the last run's password would greet the new one

        try:
            menu = load_menu()
            await runtime.wechat.menu.create(menu)
        except (MenuFileError, WeChatAPIError) as exc:
            # The demo still runs; the simulator then shows the file's menu.
            menu_state["text"] = f"推送失败：{exc}"
            log.warning("demo menu push failed: %s", exc)
            return
        menu_state["text"] = f"已推送 {DEFAULT_MENU.relative_to(DEFAULT_MENU.parents[1])}（{len(menu['button'])} 个一级菜单）"

    def banner(port: int) -> None:
        base = f"http://{_display_host(config.host)}:{port}"
        lines = [
            "wetoop-bot 演示环境已启动",
            f"  聊天模拟器：     {base}/simulator   （在浏览器中打开，像在微信里一样和公众号对话）",
            f"  管理后台：       {base}/admin   （用户名：{admin['name']}，密码：{admin['password']}，角色：所有者；每次启动重新生成）",
            f"  公众号消息接口： {base}/wechat   （Token：{config.wechat_token}；明文、兼容、安全模式均可，"
            f"EncodingAESKey：{config.wechat_aes_key}）",
            f"  健康检查：       {base}/healthz",
            f"  小程序 API：     {base}/api/v1/   （接口文档：{base}/api/v1/openapi.json；登录 code 形如“用户名-序号”，如 alice-1：同一用户名即同一用户，每个 code 只能用一次）",
            f"  微信 API 模拟器：{config.wechat_api_base}/   （已发出的消息：{config.wechat_api_base}/_emulator/messages）",
            "  通知发送：       服务进程内的 worker 已运行"
            + ("（安全通告、条款修改通知以模板消息发送，其他以客服消息发送）" if config.notice_templates == str(DEMO_TEMPLATES) else ""),
            f"  自定义菜单：     {menu_state['text']}",
            f"  AppID：          {config.wechat_appid}",
            f"  数据目录：       {config.data_dir.resolve()}",
            "按 Ctrl-C 停止（会一并停止内置数据库等子进程）。",
        ]
        if not _local(config.host):
            # The simulator posts as any user, and the Token above is public: fine on one's own machine only.
            lines.insert(-1, f"注意：演示环境监听 {config.host or '所有地址'}，同一网络中的任何人都能打开模拟器冒充任意用户、"
                         "使用上面公开的 Token 和管理员密码；请只在可信的网络中这样运行。")
        print("\n".join(lines), flush=True)

    settings = write_demo_settings(config)
    try:
        return _run_service(config, emulator_port=emulator_port, banner=banner, ready=ready)
    finally:
        remove_demo_settings(settings)


def _free_port() -> int:
    from storage.embedded import free_port

    return free_port()


if __name__ == "__main__":
    sys.exit(main())
