"""Configuration: environment variables, optionally completed by a TOML file.

Every key can be set in the environment; a TOML file (``--config FILE`` or
``WETOOP_CONFIG``) may give the same keys, and the environment wins. Invalid
values raise :class:`ConfigError` with a one-line Chinese message, which the
CLI prints before exiting with code 2.
"""

from __future__ import annotations

import base64
import json
import binascii
import dataclasses
import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from bot.file_problems import json_problem, os_problem, toml_problem

#: WeChat's production API; ``WECHAT_API_BASE`` replaces it (the emulator in tests).
DEFAULT_API_BASE = "https://api.weixin.qq.com"

KEYS = (
    "WECHAT_TOKEN",
    "WECHAT_APPID",
    "WECHAT_SECRET",
    "WECHAT_AES_KEY",
    "WECHAT_ENCRYPT_MODE",
    "WECHAT_API_BASE",
    "MINIPROGRAM_APPID",
    "MINIPROGRAM_SECRET",
    "MONGODB_URI",
    "REDIS_URL",
    "DATA_DIR",
    "HOST",
    "PORT",
    "PUBLIC_URL",
    "NOTICE_RATE",
    "NOTICE_TEMPLATES",
    "SIMULATOR",
    "TRUST_PROXY",
    "COOKIE_SECRET",
    "LOG_LEVEL",  # read by the CLI before the rest (logging starts first)
)


class ConfigError(Exception):
    """A configuration value that the service cannot start with."""


#: The proxies TRUST_PROXY=1 stands for: one on this machine.
LOOPBACK = ("127.0.0.0/8", "::1/128")


@dataclasses.dataclass(frozen=True)
class Config:
    """The validated configuration of one service process.

    ``mongodb_uri`` and ``redis_url`` are ``None`` for the embedded default:
    the service then starts its own nx-27017 and Valkey under ``data_dir``.
    """

    wechat_token: str | None = None
    wechat_appid: str | None = None
    wechat_secret: str | None = None
    wechat_aes_key: str | None = None
    #: The console's 消息加解密方式 (``plain``, ``compatible``, ``safe``); None:
    #: compatible with an EncodingAESKey, else plain (:attr:`encrypt_mode`).
    wechat_encrypt_mode: str | None = None
    wechat_api_base: str = DEFAULT_API_BASE
    miniprogram_appid: str | None = None
    miniprogram_secret: str | None = None
    mongodb_uri: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path("./var")
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    notice_rate: float = 100.0
    notice_templates: str | None = None
    #: The chat simulator page (/simulator): demo and development only.
    simulator: bool = False
    #: The networks of the proxies (nginx in front) whose X-Real-IP / X-Forwarded-For /
    #: X-Forwarded-Proto give the client's address and scheme; from anyone else
    #: these headers are ignored (a client could claim any address and dodge
    #: per-address limits). TRUST_PROXY=1: this machine's proxy only (loopback).
    trust_proxy: tuple[str, ...] = LOOPBACK
    #: Signs the admin console's cookies; None: generated once into DATA_DIR/run/cookie_secret.
    cookie_secret: str | None = None

    def replace(self, **changes) -> "Config":
        """A copy with ``changes`` applied (command-line flags override the environment)."""
        merged = dataclasses.replace(self, **changes)
        return validate(merged)

    @property
    def base_url(self) -> str:
        """Where users reach the service (links in replies): PUBLIC_URL, else host and port."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def encrypt_mode(self) -> str:
        """How pushes come: ``plain``, ``compatible`` (either) or ``safe`` (encrypted only)."""
        return self.wechat_encrypt_mode or ("compatible" if self.wechat_aes_key else "plain")

    @property
    def safe_mode(self) -> bool:
        """True when encrypted pushes are accepted: compatible or safe mode."""
        return self.encrypt_mode != "plain"


def load(environ: Mapping[str, str] | None = None, toml_path: str | None = None) -> Config:
    """Read the configuration from ``environ`` (default ``os.environ``) and a TOML file."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    toml_path = toml_path or environ.get("WETOOP_CONFIG")
    if toml_path:
        values.update(_read_toml(toml_path))
    for key in KEYS:
        if environ.get(key, "") != "":
            values[key] = environ[key]
    return validate(_from_values(values))


def file_value(name: str, toml_path: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """``name`` as the TOML file (``toml_path`` or ``WETOOP_CONFIG``) gives it,
    for what is read before the configuration (None: not given, or a file
    :func:`load` will refuse with its own message)."""
    environ = os.environ if environ is None else environ
    path = toml_path or environ.get("WETOOP_CONFIG")
    if not path:
        return None
    try:
        return _read_toml(path).get(name)
    except ConfigError:
        return None


def _read_toml(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8-sig")  # Windows Notepad starts its UTF-8 files with a BOM
    except OSError as exc:
        raise ConfigError(f"无法读取配置文件 {path}：{os_problem(exc)}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"配置文件 {path} 不是 UTF-8 编码的文本") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"配置文件 {path} {toml_problem(exc, text)}") from exc
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ConfigError(f"配置文件 {path} 含有未知的配置项：{', '.join(unknown)}")
    return {key: str(value) for key, value in data.items()}


def _from_values(values: Mapping[str, str]) -> Config:
    rate_text = values.get("NOTICE_RATE", "100")
    try:
        notice_rate = float(rate_text)
    except ValueError:
        raise ConfigError(f"NOTICE_RATE 必须是正数（每秒发送的消息数），收到的是 {rate_text!r}") from None
    port_text = values.get("PORT", "8080")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"PORT 必须是 0 到 65535 之间的整数（0 表示任选一个空闲端口），收到的是 {port_text!r}") from None
    return Config(
        wechat_token=values.get("WECHAT_TOKEN"),
        wechat_appid=values.get("WECHAT_APPID"),
        wechat_secret=values.get("WECHAT_SECRET"),
        wechat_aes_key=values.get("WECHAT_AES_KEY"),
        wechat_encrypt_mode=_encrypt_mode(values.get("WECHAT_ENCRYPT_MODE")),
        wechat_api_base=values.get("WECHAT_API_BASE", DEFAULT_API_BASE),
        miniprogram_appid=values.get("MINIPROGRAM_APPID"),
        miniprogram_secret=values.get("MINIPROGRAM_SECRET"),
        mongodb_uri=values.get("MONGODB_URI"),
        redis_url=values.get("REDIS_URL"),
        data_dir=Path(values.get("DATA_DIR", "./var")),
        host=values.get("HOST", "127.0.0.1"),
        port=port,
        public_url=values.get("PUBLIC_URL"),
        notice_rate=notice_rate,
        notice_templates=values.get("NOTICE_TEMPLATES"),
        simulator=_flag("SIMULATOR", values.get("SIMULATOR", "0")),
        trust_proxy=_proxies(values.get("TRUST_PROXY", "1")),
        cookie_secret=values.get("COOKIE_SECRET"),
    )


#: WECHAT_ENCRYPT_MODE's values, in English or as the console names them.
ENCRYPT_MODES = {"plain": "plain", "明文": "plain", "compatible": "compatible", "兼容": "compatible",
                 "safe": "safe", "安全": "safe"}


def _encrypt_mode(text: str | None) -> str | None:
    if text is None:
        return None
    mode = ENCRYPT_MODES.get(text.strip().lower().removesuffix("模式"))
    if mode is None:
        raise ConfigError(f"WECHAT_ENCRYPT_MODE 只能是 plain（明文）、compatible（兼容）或 safe（安全），收到的是 {text!r}")
    return mode


def _proxies(text: str) -> tuple[str, ...]:
    """TRUST_PROXY: 1 (a proxy on this machine), 0 (none), or the proxies'
    addresses or networks, comma-separated (10.0.0.5, 10.0.0.0/24)."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return LOOPBACK
    if value in ("0", "false", "no", "off", ""):
        return ()
    networks = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(f"TRUST_PROXY 必须是 1、0 或反向代理的地址（如 10.0.0.5、10.0.0.0/24，逗号分隔），"
                              f"“{part}”不是有效的地址") from None
    return tuple(networks)


def _flag(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} 必须是 1 或 0（开或关），收到的是 {text!r}")


#: Settings given together or not at all, and why.
_PAIRS = (
    # A real Redis beside an embedded MongoDB (or the reverse): such a worker
    # took the real notice queue and acknowledged it against a database that
    # held none of its notices.
    ("mongodb_uri", "redis_url", "请同时设置两者（使用外部数据库），或都不设置（使用数据目录中的内置数据库）"),
    # One without the other: every log-in answered 503 "请稍后再试", the cause said nowhere.
    ("miniprogram_appid", "miniprogram_secret", "小程序登录需要两者（小程序后台“开发管理 - 开发设置”）"),
)


def validate(config: Config) -> Config:
    """Check every value; return ``config`` unchanged or raise :class:`ConfigError`."""
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"PORT 必须是 0 到 65535 之间的整数（0 表示任选一个空闲端口），收到的是 {config.port}")
    if config.wechat_token is not None and not _valid_token(config.wechat_token):
        raise ConfigError("WECHAT_TOKEN 必须是 3 到 32 位的英文字母或数字（与公众平台“服务器配置”中的 Token 一致）")
    if config.wechat_aes_key is not None:
        check_aes_key(config.wechat_aes_key)
    if config.encrypt_mode not in ("plain", "compatible", "safe"):
        raise ConfigError(f"WECHAT_ENCRYPT_MODE 只能是 plain（明文）、compatible（兼容）或 safe（安全），收到的是 {config.encrypt_mode!r}")
    if config.encrypt_mode != "plain" and not config.wechat_aes_key:
        raise ConfigError(f"WECHAT_ENCRYPT_MODE={config.encrypt_mode} 需要同时设置 WECHAT_AES_KEY（公众平台生成的 EncodingAESKey）")
    parts = urlsplit(config.wechat_api_base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"WECHAT_API_BASE 必须是 http:// 或 https:// 开头的网址，收到的是 {config.wechat_api_base!r}")
    if not 0 < config.notice_rate <= 100_000:
        raise ConfigError(f"NOTICE_RATE 必须是 0 到 100000 之间的正数，收到的是 {config.notice_rate}")
    if config.notice_templates is not None:
        _check_templates(config.notice_templates)
    if config.public_url is not None:
        public = urlsplit(config.public_url)
        if public.scheme not in ("http", "https") or not public.netloc:
            raise ConfigError(f"PUBLIC_URL 必须是 http:// 或 https:// 开头的网址，收到的是 {config.public_url!r}")
        if public.path not in ("", "/") or public.query or public.fragment:
            # Pages and redirects name their paths from the root (/admin ...).
            raise ConfigError(f"PUBLIC_URL 只能是站点地址（如 https://bot.example.com），服务不支持挂在子路径下，收到的是 {config.public_url!r}")
    if config.cookie_secret is not None and len(config.cookie_secret) < 32:
        raise ConfigError("COOKIE_SECRET 至少需要 32 个字符（建议用 python -c 'import secrets; print(secrets.token_urlsafe(48))' 生成）")
    if config.mongodb_uri is not None:
        _check_mongodb_uri(config.mongodb_uri)
    if config.redis_url is not None:
        _check_redis_url(config.redis_url)
    for first, second, why in _PAIRS:
        if bool(getattr(config, first)) != bool(getattr(config, second)):
            given, missing = (first, second) if getattr(config, first) else (second, first)
            raise ConfigError(f"设置了 {given.upper()} 却没有设置 {missing.upper()}：{why}")
    return config


def _valid_token(token: str) -> bool:
    # WeChat's console accepts 3-32 letters and digits for the Token.
    return 3 <= len(token) <= 32 and token.isascii() and token.isalnum()


def check_aes_key(key: str) -> bytes:
    """Decode an EncodingAESKey (43 Base64 characters, 32 bytes) or raise ConfigError."""
    message = "WECHAT_AES_KEY 必须是公众平台生成的 43 位 EncodingAESKey（Base64 字符）"
    if len(key) != 43:
        raise ConfigError(f"{message}，当前长度为 {len(key)}")
    try:
        raw = base64.b64decode(key + "=", validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{message}，其中含有非 Base64 字符") from None
    if len(raw) != 32:
        raise ConfigError(message)
    return raw


def _check_templates(path: str) -> None:
    from bot.notice_checks import load_templates

    try:
        load_templates(path)  # which also checks every field's pattern
    except OSError as exc:
        raise ConfigError(f"无法读取 NOTICE_TEMPLATES 文件 {path}：{os_problem(exc)}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"NOTICE_TEMPLATES 文件 {path} {json_problem(exc)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"NOTICE_TEMPLATES 文件 {path} 不是 UTF-8 编码的文本") from None
    except ValueError as exc:  # the file's own rules (bot.notice_checks.load_templates), in Chinese
        raise ConfigError(f"NOTICE_TEMPLATES 文件 {path} 有误：{exc}") from None


def _check_mongodb_uri(uri: str) -> None:
    from pymongo.errors import ConfigurationError, InvalidURI
    from pymongo.uri_parser import parse_uri

    example = "例如 mongodb://127.0.0.1:27017/wetoop 或 mongodb+srv://用户名:密码@集群地址/wetoop"
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError(f"MONGODB_URI 应以 mongodb:// 或 mongodb+srv:// 开头，{example}")
    if uri.startswith("mongodb+srv://"):
        # Parsing an SRV URI resolves DNS; check its shape only.
        if not urlsplit(uri).hostname:
            raise ConfigError(f"MONGODB_URI 缺少主机名，{example}")
        return
    try:
        parse_uri(uri)
    except (InvalidURI, ConfigurationError, ValueError):
        # The driver's reason is English; the usual faults, in Chinese.
        raise ConfigError(f"MONGODB_URI 格式不正确（请检查主机、端口、用户名密码中的特殊字符需 % 编码、参数名），{example}") from None


def _check_redis_url(url: str) -> None:
    from redis.connection import parse_url

    example = "例如 redis://127.0.0.1:6379/0、rediss://:密码@主机:6380/0 或 unix:///run/redis.sock"
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL 应以 redis://、rediss:// 或 unix:// 开头，{example}")
    try:
        parse_url(url)
    except ValueError:
        raise ConfigError(f"REDIS_URL 格式不正确（请检查主机、端口和库编号），{example}") from None
