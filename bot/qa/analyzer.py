"""From text to terms: folding, jieba segmentation, stop words and synonyms.

A private :class:`jieba.Tokenizer` (never jieba's global one) loads a pruned copy of
jieba's dictionary (words at least ``min_word_freq`` frequent; at 5, some 137,000 of its
349,000 words): it loads in about a third of the full dictionary's time (a second on a
slow machine, cache or not), and rare compounds (公司员工, 今天天气) are cut into the
words users share with the agreement, which suits matching. The pruned file and
jieba's cache of it live in ``cache_dir``; both are written atomically, so processes
starting together may share the directory. The lexicon's words are added after loading
(they are few), so a changed lexicon never needs a new cache.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

from bot.qa.data import Lexicon, Settings, fold
from bot.validation import TRAILING_PUNCTUATION

if TYPE_CHECKING:
    import jieba

log = logging.getLogger(__name__)

#: One word of a question: its terms, and how much it counts (single characters less).
Group = tuple[tuple[str, ...], float]


class Analyzer:
    """Turns a question (or a clause, or an example) into the terms the index compares."""

    def __init__(self, tokenizer: jieba.Tokenizer, lexicon: Lexicon, settings: Settings) -> None:
        self._tk = tokenizer
        self._hmm = settings.hmm
        self._search = settings.search_mode
        self._char_weight = settings.char_weight
        self.stopwords = lexicon.stopwords
        self.vague = lexicon.vague
        self.smalltalk = lexicon.smalltalk
        self._smalltalk_words = frozenset().union(*lexicon.smalltalk.values())
        for word, freq in lexicon.words:
            tokenizer.add_word(word, freq)
        for key in lexicon.synonyms:
            if len(key) > 1:
                tokenizer.add_word(key)
        for word in lexicon.split:
            # What jieba's del_word does, without its side effect on the global HMM.
            if tokenizer.FREQ.get(word):
                tokenizer.total -= tokenizer.FREQ[word]
                tokenizer.FREQ[word] = 0
        # Synonym targets are cut like any text, once.
        self._synonyms = {
            key: tuple(t for value in values for t in self._words(value)) for key, values in lexicon.synonyms.items()
        }

    @classmethod
    def load(cls, lexicon: Lexicon, settings: Settings, cache_dir: Path | None = None) -> "Analyzer":
        return cls(load_tokenizer(settings.min_word_freq, cache_dir), lexicon, settings)

    # -- text to tokens -------------------------------------------------------------

    def tokens(self, text: str) -> list[str]:
        """jieba's words of the folded text, without blanks and punctuation."""
        return [t for t in self._tk.cut(fold(text), HMM=self._hmm) if _is_word(t)]

    def _words(self, text: str) -> list[str]:
        return [t for t in self.tokens(text) if t not in self.stopwords]

    def groups(self, text: str) -> list[Group]:
        """The terms to match, one group per word of the text: stop words dropped, a
        synonym replaced by the agreement's words, and (search mode) a long word with
        the dictionary words inside it (知识产权 → 知识, 产权, 知识产权). The index
        lets a group count about once, however many terms it has; a group from a
        single character (改, 删, 钱) counts ``char_weight`` as much."""
        out: list[Group] = []
        synonyms, stopwords, freq = self._synonyms, self.stopwords, self._tk.FREQ
        # Consecutive lone characters (not stop words, no synonym) are most often a word
        # jieba does not know (续费, 网店), cut apart since its HMM is off: they count as
        # one word, the run, holding its characters too, not as several near-weightless ones.
        run: list[str] = []

        def end_run() -> None:
            if len(run) > 1:
                out.append((("".join(run), *run), 1.0))
            elif run:
                out.append(((run[0],), self._char_weight))
            run.clear()

        for token in self.tokens(text):
            if token in stopwords:
                end_run()
                continue
            mapped = synonyms.get(token)
            if len(token) == 1 and mapped is None and not token.isascii() and not token.isdigit():
                run.append(token)
                continue
            end_run()
            # A lone character or number says little, unless the lexicon gives it a meaning.
            factor = self._char_weight if (len(token) == 1 or token.isdigit()) and mapped is None else 1.0
            if mapped is not None:
                if mapped:
                    out.append((mapped, factor))
                continue
            group = [token]
            if self._search and len(token) > 2:
                for n in (2, 3):
                    for i in range(len(token) - n + 1):
                        gram = token[i : i + n]
                        if n < len(token) and freq.get(gram) and gram not in stopwords:
                            group.extend(synonyms.get(gram, (gram,)))
            out.append((tuple(dict.fromkeys(group)), factor))
        end_run()
        return list(dict.fromkeys(out))

    def terms(self, text: str) -> list[str]:
        """All terms of :meth:`groups`, flat (what a document is made of)."""
        return [t for group, _ in self.groups(text) for t in group]

    def smalltalk_group(self, text: str) -> str | None:
        """``"greeting"``, ``"thanks"`` or ``"bye"`` when the message is nothing but that."""
        whole = fold(text).strip().strip(TRAILING_PUNCTUATION).strip()
        if whole in self._smalltalk_words:
            # The message is one listed phrase, which jieba may split ("哈喽" -> 哈 / 喽).
            tokens = [whole]
        else:
            tokens = self.tokens(text)
        if not tokens and text.strip():
            tokens = [fold(text.strip())]  # an emoji alone
        found = [t for t in tokens if t in self._smalltalk_words]
        if not found or any(t not in self._smalltalk_words and t not in self.stopwords for t in tokens):
            return None
        for group in ("thanks", "bye", "greeting"):
            if any(t in self.smalltalk[group] for t in found):
                return group
        return None

    def frequency(self, term: str) -> int:
        return self._tk.FREQ.get(term, 0)




def _is_word(token: str) -> bool:
    return any(unicodedata.category(ch)[0] in "LN" for ch in token)


# -- the tokenizer and its cache ------------------------------------------------------


def default_cache_dir() -> Path | None:
    """The user's own cache (``$XDG_CACHE_HOME``, else ``~/.cache``; None
    without a home directory): a directory of a fixed name in the shared
    temporary directory could be made first by another local user, who could
    then replace the cache jieba loads."""
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "wetoop-bot" / "jieba"
    home = Path.home()
    return home / ".cache" / "wetoop-bot" / "jieba" if home.is_dir() else None


def private_dir(path: Path | None) -> Path:
    """``path``, made if missing, when only this user can write it; else (or
    for None) a private temporary directory removed at exit (jieba's cache is
    loaded with ``marshal``, never to be read from a file someone else could
    have written)."""
    try:
        if path is None:
            raise FileNotFoundError("没有用户主目录")
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        status = path.stat()
        if hasattr(os, "getuid") and (status.st_uid != os.getuid() or status.st_mode & 0o022):
            raise PermissionError("其他用户可以写入该目录")
        return path
    except OSError as exc:
        fallback = tempfile.mkdtemp(prefix="wetoop-bot-jieba-")
        atexit.register(shutil.rmtree, fallback, ignore_errors=True)  # 5 MB a run, left behind otherwise
        log.warning("jieba 词典缓存未使用 %s（%s）：本次使用临时目录 %s", path, exc, fallback)
        return Path(fallback)


def load_tokenizer(min_word_freq: int, cache_dir: Path | None = None) -> jieba.Tokenizer:
    """A private, initialised :class:`jieba.Tokenizer` on the pruned dictionary,
    using (and filling) jieba's cache in ``cache_dir``."""
    import jieba  # here: importing it costs 0.2 s that commands answering no question skip

    cache_dir = private_dir(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    source = Path(jieba.__file__).resolve().parent / jieba.DEFAULT_DICT_NAME
    if min_word_freq > 1:
        dictionary = _pruned(source, min_word_freq, cache_dir)
    else:
        dictionary = source
    tokenizer = jieba.Tokenizer(dictionary=str(dictionary))
    tokenizer.tmp_dir = str(cache_dir)
    tokenizer.cache_file = dictionary.stem + ".cache"
    with _quiet_jieba():
        tokenizer.initialize()
    return tokenizer


def _pruned(source: Path, min_freq: int, cache_dir: Path) -> Path:
    stat = source.stat()
    key = hashlib.sha256(f"{source}|{stat.st_size}|{stat.st_mtime_ns}|{min_freq}".encode()).hexdigest()[:12]
    target = cache_dir / f"jieba-dict-f{min_freq}-{key}.txt"
    if target.exists():
        return target
    lines = []
    with source.open(encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and int(parts[1]) >= min_freq:
                lines.append(f"{parts[0]} {parts[1]}\n")
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=target.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.writelines(lines)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


@contextlib.contextmanager
def _quiet_jieba():
    """jieba logs its loading at DEBUG on its own stderr handler; keep start-up quiet."""
    import jieba

    logger = jieba.default_logger
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
