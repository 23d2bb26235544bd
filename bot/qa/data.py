"""The Q&A's data files: lexicon, example questions and settings, with overrides.

Three TOML files in ``data/qa/`` (formats in ``data/qa/README.md``):

- ``lexicon.toml``: jieba user words, words to split, stop words, synonyms, small talk;
- ``examples.toml``: example questions per clause, and out-of-scope questions;
- ``settings.toml``: segmentation, ranking weights, the abstention threshold.

An override directory may hold files with the same names. By default an override file
*extends* the shipped one: tables are merged key by key, lists get the override's new
items appended, and any other value (a number, a string) is replaced. A file whose top
level says ``replace = true`` replaces the shipped file instead.
"""

from __future__ import annotations

import dataclasses
import tomllib
import unicodedata
from pathlib import Path
from typing import Any

from bot.errors import BotError
from bot.file_problems import os_problem, toml_problem
from bot.traditional import simplified

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "qa"
FILES = ("lexicon.toml", "examples.toml", "settings.toml")
SMALLTALK_GROUPS = ("greeting", "thanks", "bye")


class QADataError(BotError):
    """A Q&A data file that is missing or malformed."""

    code = "invalid_qa_data"
    kind = "invalid"


def fold(text: str) -> str:
    """NFKC (full-width to half-width), lower case and Simplified characters
    (:mod:`bot.traditional`): how every word is compared."""
    return simplified(unicodedata.normalize("NFKC", text).lower())


@dataclasses.dataclass(frozen=True)
class Lexicon:
    words: tuple[tuple[str, int | None], ...]
    split: tuple[str, ...]
    stopwords: frozenset[str]
    synonyms: dict[str, tuple[str, ...]]
    smalltalk: dict[str, frozenset[str]]
    #: Words that alone make no question (协议, 条款): a message of only these asks for one.
    vague: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class ClauseExamples:
    ref: str  # clause number as written in the file, e.g. "4.2" or "前言.3"
    anchor: str | None
    examples: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Settings:
    min_word_freq: int = 5
    hmm: bool = False
    search_mode: bool = True
    k1: float = 1.2
    b: float = 0.75
    weight_text: float = 1.0
    weight_sentence: float = 0.0
    weight_examples: float = 1.0
    weight_section: float = 0.4
    example_only_weight: float = 1.0
    char_weight: float = 0.3
    unknown_weight: float = 0.6
    group_rest: float = 0.3
    min_score: float = 0.5
    min_coverage: float = 0.3
    min_single_coverage: float = 0.5
    min_own_coverage: float = 0.0
    reject_margin: float = 0.0
    max_quote_chars: int = 220
    whole_clause_chars: int = 120
    nearest_sections: int = 3


#: settings.toml: table → {key: type}
_SETTINGS_SCHEMA = {
    "jieba": {"min_word_freq": int, "hmm": bool, "search_mode": bool},
    "ranking": {
        "k1": float, "b": float, "weight_text": float, "weight_sentence": float, "weight_examples": float,
        "weight_section": float, "example_only_weight": float,
        "char_weight": float, "unknown_weight": float, "group_rest": float,
    },
    "answer": {
        "min_score": float, "min_coverage": float, "min_single_coverage": float, "min_own_coverage": float, "reject_margin": float, "max_quote_chars": int, "whole_clause_chars": int, "nearest_sections": int,
    },
}


@dataclasses.dataclass(frozen=True)
class QAData:
    lexicon: Lexicon
    clauses: tuple[ClauseExamples, ...]
    out_of_scope: tuple[str, ...]
    settings: Settings


def load_data(data_dir: Path, override_dir: Path | None = None) -> QAData:
    """Read the three files from ``data_dir``, merged with ``override_dir``'s. Raises
    :class:`QADataError` with a message in Chinese."""
    docs = {}
    for name in FILES:
        doc = _read(Path(data_dir) / name, required=True)
        if override_dir is not None:
            extra = _read(Path(override_dir) / name, required=False)
            if extra is not None:
                doc = merge(doc, extra)
        doc.pop("replace", None)
        docs[name] = doc
    return QAData(
        lexicon=_lexicon(docs["lexicon.toml"]),
        clauses=_clauses(docs["examples.toml"]),
        out_of_scope=_strings(docs["examples.toml"].get("out_of_scope", {}).get("examples", []),
                              "examples.toml [out_of_scope] examples"),
        settings=_settings(docs["settings.toml"]),
    )


def merge(base: dict, override: dict) -> dict:
    """The override rule (see the module's documentation)."""
    if override.get("replace") is True:
        return {k: v for k, v in override.items() if k != "replace"}
    return _merge(base, override)


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(override, list):
        return base + [item for item in override if item not in base]
    return override


def _read(path: Path, required: bool) -> dict | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise QADataError(f"问答数据文件不存在：{path}") from None
        return None
    except OSError as exc:
        raise QADataError(f"无法读取问答数据文件 {path}：{os_problem(exc)}") from None
    except UnicodeDecodeError:
        raise QADataError(f"问答数据文件 {path} 不是 UTF-8 编码的文本") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise QADataError(f"问答数据文件 {path} {toml_problem(exc, text)}") from None


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise QADataError(f"{where} 必须是非空文本的列表")
    return tuple(value)


def _lexicon(doc: dict) -> Lexicon:
    _no_unknown(doc, {"words", "split", "stopwords", "synonyms", "smalltalk", "vague"}, "lexicon.toml")
    words = []
    for entry in _strings(doc.get("words", []), "lexicon.toml words"):
        parts = entry.split()
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise QADataError(f"lexicon.toml words 的条目应为“词”或“词 词频”：{entry!r}")
        words.append((fold(parts[0]), int(parts[1]) if len(parts) == 2 else None))
    synonyms_doc = doc.get("synonyms", {})
    if not isinstance(synonyms_doc, dict):
        raise QADataError("lexicon.toml [synonyms] 必须是表（词 = [\"协议用词\", …]）")
    synonyms = {}
    for key, value in synonyms_doc.items():
        if not key.strip() or any(ch.isspace() for ch in key.strip()):
            raise QADataError(f"lexicon.toml [synonyms] 的词不能为空或含空格：{key!r}")
        synonyms[fold(key).strip()] = tuple(fold(v) for v in _strings(value, f"lexicon.toml [synonyms] {key!r}"))
    smalltalk_doc = doc.get("smalltalk", {})
    if not isinstance(smalltalk_doc, dict):
        raise QADataError("lexicon.toml [smalltalk] 必须是表")
    _no_unknown(smalltalk_doc, set(SMALLTALK_GROUPS), "lexicon.toml [smalltalk]")
    smalltalk = {
        group: frozenset(fold(w) for w in _strings(smalltalk_doc.get(group, []), f"lexicon.toml [smalltalk] {group}"))
        for group in SMALLTALK_GROUPS
    }
    return Lexicon(
        words=tuple(words),
        split=tuple(fold(w) for w in _strings(doc.get("split", []), "lexicon.toml split")),
        stopwords=frozenset(fold(w) for w in _strings(doc.get("stopwords", []), "lexicon.toml stopwords")),
        synonyms=synonyms,
        smalltalk=smalltalk,
        vague=frozenset(fold(w) for w in _strings(doc.get("vague", []), "lexicon.toml vague")),
    )


def _clauses(doc: dict) -> tuple[ClauseExamples, ...]:
    _no_unknown(doc, {"clauses", "out_of_scope"}, "examples.toml")
    table = doc.get("clauses", {})
    if not isinstance(table, dict):
        raise QADataError("examples.toml [clauses] 必须是表")
    out = []
    for ref, entry in table.items():
        where = f"examples.toml [clauses.\"{ref}\"]"
        if not isinstance(entry, dict):
            raise QADataError(f"{where} 必须是表")
        _no_unknown(entry, {"anchor", "examples"}, where)
        anchor = entry.get("anchor")
        if anchor is not None and (not isinstance(anchor, str) or not anchor.strip()):
            raise QADataError(f"{where} anchor 必须是非空文本")
        out.append(ClauseExamples(ref, anchor, _strings(entry.get("examples", []), f"{where} examples")))
    oos = doc.get("out_of_scope", {})
    if not isinstance(oos, dict):
        raise QADataError("examples.toml [out_of_scope] 必须是表")
    _no_unknown(oos, {"examples"}, "examples.toml [out_of_scope]")
    return tuple(out)


def _settings(doc: dict) -> Settings:
    _no_unknown(doc, set(_SETTINGS_SCHEMA), "settings.toml")
    values = {}
    for table, schema in _SETTINGS_SCHEMA.items():
        section = doc.get(table, {})
        if not isinstance(section, dict):
            raise QADataError(f"settings.toml [{table}] 必须是表")
        _no_unknown(section, set(schema), f"settings.toml [{table}]")
        for key, kind in schema.items():
            if key not in section:
                continue
            value = section[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise QADataError(f"settings.toml [{table}] {key} 的类型不对，应为{_KIND_NAMES[kind]}")
            if kind is not bool and value < 0:
                raise QADataError(f"settings.toml [{table}] {key} 不能为负数")
            values[key] = value
    return Settings(**values)


_KIND_NAMES = {int: "整数", float: "数字", bool: "true 或 false"}


def _no_unknown(doc: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(doc) - known - {"replace"})
    if unknown:
        raise QADataError(f"{where} 有未知的字段：{', '.join(unknown)}")
