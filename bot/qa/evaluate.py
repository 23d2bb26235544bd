"""Accuracy and abstention figures of a :class:`~bot.qa.QA` on a question file.

A question file is JSON Lines, one question a line::

    {"q": "我上传的图片版权归谁？", "expected": ["4.1"]}
    {"q": "今天天气怎么样", "expected": []}

``expected`` lists the clauses that answer the question (any of them counts as right);
empty means the agreement does not cover it and the bot must abstain. Blank lines and
lines starting with ``#`` are skipped.

Figures (``in`` = questions with an expected clause, ``out`` = the others):

- ``top1``: share of ``in`` answered (not abstained) with an expected clause;
- ``top3`` and ``mrr``: the ranking alone, threshold ignored (an expected clause among
  the best three; mean of 1/rank of the first expected clause);
- ``abstain_precision``: of the questions not answered from the agreement, the share
  that are ``out``; ``abstain_recall``: of ``out``, the share not answered;
- ``false_abstain``: share of ``in`` not answered; ``wrong_answer``: share of ``in``
  answered with another clause.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import BotError
from bot.file_problems import json_problem, os_problem

if TYPE_CHECKING:
    from bot.qa.engine import QA

#: What the dev set must reach (tests/test_qa.py, ``wetoop-bot qa-eval --check``).
TARGETS = {"top1": 0.90, "abstain_recall": 0.90, "false_abstain": 0.05}


class QuestionFileError(BotError):
    code = "invalid_question_file"
    kind = "invalid"


def read_questions(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """The questions of a file, checked. Raises :class:`QuestionFileError` (Chinese)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QuestionFileError(f"问题文件不存在：{path}") from None
    except IsADirectoryError:
        raise QuestionFileError(f"{path} 是目录，不是问题文件") from None
    except OSError as exc:
        raise QuestionFileError(f"无法读取问题文件 {path}：{os_problem(exc)}") from None
    except UnicodeDecodeError:
        raise QuestionFileError(f"问题文件 {path} 不是 UTF-8 编码的文本") from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"问题文件 {path} 第 {number} 行"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QuestionFileError(f"{where} {json_problem(exc)}") from None
        if not isinstance(item, dict):
            raise QuestionFileError(f'{where} 应为对象，例如 {{"q": "问题", "expected": ["4.1"]}}')
        q, expected = item.get("q"), item.get("expected")
        if not isinstance(q, str) or not q.strip():
            raise QuestionFileError(f"{where}：q 必须是非空文本")
        if not isinstance(expected, list) or not all(isinstance(e, str) and e.strip() for e in expected):
            raise QuestionFileError(f"{where}：expected 必须是条款编号的列表（可以为空），例如 [\"4.1\"]")
        out.append((q, tuple(expected)))
    if not out:
        raise QuestionFileError(f"问题文件 {path} 中没有问题")
    return out


def evaluate(qa: "QA", path: Path) -> dict:
    """The figures above for the questions in ``path`` (plus ``misses``: what went wrong)."""
    questions = read_questions(path)
    known = {u.ref for u in qa.units}
    for q, expected in questions:
        unknown = [e for e in expected if e not in known]
        if unknown:
            raise QuestionFileError(
                f"问题文件 {path} 中的问题“{q}”引用了协议版本 {qa.version.version} 中不存在的条款：{', '.join(unknown)}"
            )
    n_in = n_out = top1 = top3 = answered_wrong = false_abstain = out_abstained = 0
    rr = 0.0
    misses = []
    for q, expected in questions:
        reply = qa.answer(q)
        answered = reply.kind == "answer"
        if expected:
            n_in += 1
            ranking = [ref for ref, _ in qa.rank(q, k=len(qa.units))]
            rank = next((i + 1 for i, ref in enumerate(ranking) if ref in expected), None)
            rr += 1 / rank if rank else 0.0
            top3 += bool(rank and rank <= 3)
            if answered and reply.refs[0] in expected:
                top1 += 1
                continue
            if answered:
                answered_wrong += 1
            else:
                false_abstain += 1
            misses.append({"q": q, "expected": list(expected), "kind": reply.kind, "refs": list(reply.refs),
                           "score": round(reply.score, 3), "rank": rank})
        else:
            n_out += 1
            if not answered:
                out_abstained += 1
            else:
                misses.append({"q": q, "expected": [], "kind": reply.kind, "refs": list(reply.refs),
                               "score": round(reply.score, 3), "rank": None})
    return _figures(str(path), qa, n_in, n_out, top1, top3, rr, answered_wrong, false_abstain, out_abstained, misses)


def leave_one_out(qa: "QA") -> dict:
    """The figures of :func:`evaluate` on the example questions of ``data/qa/examples.toml``,
    each asked with itself left out of the index (out-of-scope examples must be refused).
    This is what the thresholds in ``settings.toml`` are calibrated on."""
    from bot.qa.units import attach_examples

    index, units = qa.index, qa.units
    examples = attach_examples(units, qa.data.clauses)
    asked = [(u, q) for u, qs in enumerate(examples) for q in qs] + [(index.reject, q) for q in qa.data.out_of_scope]
    n_in = n_out = top1 = top3 = wrong = false_abstain = out_abstained = 0
    rr = 0.0
    misses = []
    for (doc, owner), (unit, q) in zip(index.example_docs(), asked):
        assert owner == unit, "examples and index out of step"
        groups = qa.analyzer.groups(q)
        scores, best, confident = qa.judge(groups, exclude_doc=doc) if groups else ([0.0] * len(units), 0, False)
        if unit == index.reject:
            n_out += 1
            out_abstained += not confident
            if confident:
                misses.append({"q": q, "expected": [], "kind": "answer", "refs": [units[best].ref],
                               "score": round(scores[best], 3), "rank": None})
            continue
        n_in += 1
        order = sorted(range(len(scores)), key=lambda u: (-scores[u], u))
        rank = order.index(unit) + 1
        rr += 1 / rank
        top3 += rank <= 3
        if confident and best == unit:
            top1 += 1
            continue
        wrong += confident
        false_abstain += not confident
        misses.append({"q": q, "expected": [units[unit].ref], "kind": "answer" if confident else "abstain",
                       "refs": [units[best].ref], "score": round(scores[best], 3), "rank": rank})
    return _figures("examples.toml（留一法）", qa, n_in, n_out, top1, top3, rr, wrong, false_abstain, out_abstained, misses)


def _figures(name, qa, n_in, n_out, top1, top3, rr, wrong, false_abstain, out_abstained, misses) -> dict:
    """The figures both evaluations report, from their counts."""
    not_answered = false_abstain + out_abstained
    return {
        "file": name,
        "version": qa.version.version,
        "questions": n_in + n_out,
        "in_scope": n_in,
        "out_of_scope": n_out,
        "top1": _share(top1, n_in),
        "top3": _share(top3, n_in),
        "mrr": rr / n_in if n_in else None,
        "abstain_precision": _share(out_abstained, not_answered),
        "abstain_recall": _share(out_abstained, n_out),
        "false_abstain": _share(false_abstain, n_in),
        "wrong_answer": _share(wrong, n_in),
        "misses": misses,
    }


def meets_targets(figures: dict) -> list[str]:
    """The targets missed (empty when all are met), in Chinese."""
    missed = []
    if figures["top1"] is None or figures["top1"] < TARGETS["top1"]:
        missed.append(f"top-1 准确率低于 {TARGETS['top1']:.0%}")
    if figures["abstain_recall"] is None or figures["abstain_recall"] < TARGETS["abstain_recall"]:
        missed.append(f"超出范围问题的拒答率低于 {TARGETS['abstain_recall']:.0%}")
    if figures["false_abstain"] is None or figures["false_abstain"] > TARGETS["false_abstain"]:
        missed.append(f"范围内问题的误拒答率高于 {TARGETS['false_abstain']:.0%}")
    return missed


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
