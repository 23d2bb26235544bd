"""``wetoop-bot qa-eval``, ``ask`` and ``qa-log``: the agreement Q&A from the command line.

``qa-eval`` measures on the seed version (``load_seed()``, the version the
question files were written for) and needs no database. ``ask`` answers from
the version in force and the admins' overrides in ``DATA_DIR/qa``, as a user
in chat would be answered. ``qa-log`` lists logged questions (``--unanswered``:
the ones to review). A missing or malformed file prints one line in Chinese
and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from typing import TYPE_CHECKING

from bot.agreement import load_seed
from bot.qa_texts import KIND_LABELS
from service.clitools import UsageError, add_data_dir_flag, load_config, positive_int, with_runtime

if TYPE_CHECKING:
    from bot.qa import QA

# bot.qa (jieba, about 0.25 s to import) is imported by the commands that use it,
# not by every CLI command that only registers its flags.


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("qa-eval", help="评估协议问答：准确率、拒答情况")
    ev.add_argument(
        "file", nargs="?", type=Path, default=None,
        help="问题文件（JSON Lines，每行 {\"q\": …, \"expected\": [条款编号]}；默认 data/qa/dev.jsonl）",
    )
    _qa_flags(ev)
    ev.add_argument("--misses", action="store_true", help="列出答错、误拒答和不该回答却回答的问题")
    ev.add_argument("--check", action="store_true", help="未达到目标时以退出码 1 结束")
    ev.add_argument("--loo", action="store_true", help="改为用留一法评估 examples.toml 中的示例问题（校准阈值所用）")
    ev.set_defaults(func=cmd_qa_eval)

    ask = sub.add_parser("ask", help="像用户一样提问，打印机器人的回复")
    ask.add_argument("question", help="问题，例如 \"我上传的图片版权归谁？\"")
    _qa_flags(ask)
    ask.add_argument("--explain", action="store_true", help="在标准错误输出回复类型、引用的条款和分数")
    add_data_dir_flag(ask)
    ask.set_defaults(func=cmd_ask)

    logged = sub.add_parser("qa-log", help="列出用户提过的问题（--unanswered：未能回答、待改进的问题）")
    logged.add_argument("--unanswered", action="store_true", help="只列出未能回答的问题")
    logged.add_argument("--limit", type=positive_int, default=50, help="最多显示多少条（默认 50）")
    add_data_dir_flag(logged)
    logged.set_defaults(func=cmd_qa_log)


def _qa_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--qa-data", type=Path, default=None, help="问答数据目录（默认 data/qa）")
    parser.add_argument("--override", type=Path, help="覆盖目录：其中同名的数据文件扩展或替换默认数据")
    parser.add_argument("--cache-dir", type=Path, help="jieba 词典缓存目录（默认 ~/.cache/wetoop-bot/jieba；他人可写的目录不会使用）")


def _defaults(args: argparse.Namespace) -> None:
    from bot.qa import DEFAULT_DATA_DIR

    args.qa_data = args.qa_data or DEFAULT_DATA_DIR
    if hasattr(args, "file"):
        args.file = args.file or DEFAULT_DATA_DIR / "dev.jsonl"


def _build(args: argparse.Namespace) -> "QA":
    from bot.qa import QA

    for flag, path in (("--qa-data", args.qa_data), ("--override", args.override)):
        if path is not None and not path.is_dir():
            raise UsageError(f"{flag} 不是目录：{path}")
    return QA.build(load_seed(), args.qa_data, args.override, args.cache_dir)


def cmd_qa_eval(args: argparse.Namespace) -> int:
    from bot.qa import evaluate, read_questions
    from bot.qa.evaluate import leave_one_out, meets_targets

    _defaults(args)
    if not args.loo:
        read_questions(args.file)  # a bad file fails before the index is built
    qa = _build(args)
    figures = leave_one_out(qa) if args.loo else evaluate(qa, args.file)
    print(format_figures(figures))
    if args.misses and figures["misses"]:
        print("\n未答对的问题：")
        for miss in figures["misses"]:
            expected = "、".join(miss["expected"]) or "应拒答"
            got = "拒答" if miss["kind"] != "answer" else f"答 {miss['refs'][0]}"
            rank = f"，正确条款排第 {miss['rank']}" if miss["rank"] else ""
            print(f"· {miss['q']}（期望 {expected}；{got}，分数 {miss['score']}{rank}）")
    missed = meets_targets(figures)
    if args.check and missed:
        print("未达到目标：" + "；".join(missed), file=sys.stderr)
        return 1
    return 0


def format_figures(f: dict) -> str:
    from bot.qa.evaluate import TARGETS

    n_in, n_out = f["in_scope"], f["out_of_scope"]
    lines = [
        f"问题文件：{f['file']}（协议版本 {f['version']}）",
        f"问题 {f['questions']} 个：范围内 {n_in} 个，超出范围 {n_out} 个",
        f"top-1 准确率：{_pct(f['top1'])}（回答且引用了正确条款；目标 ≥ {TARGETS['top1']:.0%}）",
        f"top-3 准确率：{_pct(f['top3'])}（只看排序，不计拒答）",
        f"MRR：{'—' if f['mrr'] is None else format(f['mrr'], '.3f')}",
        f"拒答精确率：{_pct(f['abstain_precision'])}（拒答的问题中确实超出范围的比例）",
        f"拒答召回率：{_pct(f['abstain_recall'])}（超出范围的问题被拒答的比例；目标 ≥ {TARGETS['abstain_recall']:.0%}）",
        f"范围内误拒答率：{_pct(f['false_abstain'])}（目标 ≤ {TARGETS['false_abstain']:.0%}）",
        f"范围内答错率：{_pct(f['wrong_answer'])}（回答了但引用的条款不对）",
    ]
    return "\n".join(lines)


def _default_override(args: argparse.Namespace) -> Path | None:
    folder = load_config(args).data_dir / "qa"
    return folder if folder.is_dir() else None


def cmd_qa_log(args: argparse.Namespace) -> int:
    entries = with_runtime(args, lambda runtime: runtime.qa_log.recent("abstain" if args.unanswered else None, args.limit))
    if not entries:
        print("没有记录。")
        return 0
    from bot.agreement import CHINA
    from storage.mongo import as_datetime

    print("时间为北京时间")
    for entry in entries:
        when = as_datetime(entry["at"])  # stored in UTC, shown as everything else is shown
        at = when.astimezone(CHINA).strftime("%Y-%m-%d %H:%M") if when else "—"
        refs = "、".join(entry.get("refs") or []) or "—"
        question = entry["question"] if len(entry["question"]) <= 80 else entry["question"][:80] + "…"
        kind = KIND_LABELS.get(entry["kind"], entry["kind"])
        print(f"{at}  [{kind}] {question}  （条款 {refs}，分数 {entry.get('score', 0)}）")
    return 0


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def cmd_ask(args: argparse.Namespace) -> int:
    from bot.qa import QA

    _defaults(args)
    for flag, path in (("--qa-data", args.qa_data), ("--override", args.override)):
        if path is not None and not path.is_dir():
            raise UsageError(f"{flag} 不是目录：{path}")
    if not args.question.strip():
        raise UsageError("问题不能为空，例如：wetoop-bot ask \"我上传的图片版权归谁？\"")
    from bot.answers import MAX_QUESTION, respond, with_hint
    from bot.chat import router
    from bot import texts

    if len(args.question.strip()) > MAX_QUESTION:
        raise UsageError(texts.question_too_long(MAX_QUESTION))  # what chat and the app answer

    word = router.command_of(args.question)
    if word is not None:
        # Not a question: chat answers it with the command itself, not the Q&A.
        typed = args.question.strip()
        print(f"“{typed}”是公众号指令{'' if word == typed else f'（{word}）'}，用户发送它会收到该指令的回复，而不是问答的回答。"
              "可用指令见 README 的“In chat”一节，或在公众号中回复“帮助”。")
        return 0
    from bot import own_questions

    kind = own_questions.asked(args.question)
    if kind in (own_questions.OWN_CONSENT, own_questions.CHOICE):
        # Answered from the asking user's record (or a choice only the exact word records): no Q&A answer to show.
        print(f"“{args.question.strip()}”问的是用户自己的同意情况，公众号按发问用户的同意记录回答"
              "（同意了哪个版本、何时同意），不经过问答。")
        return 0

    async def read(runtime):
        return await runtime.terms.current(), await own_questions.published_answer(runtime.terms, args.question)

    current, published = with_runtime(args, read)
    if published is not None:  # what declining does, what the amendments changed: from the published versions
        print(published)
        return 0
    override = args.override or _default_override(args)
    qa = QA.build(current, args.qa_data, override, args.cache_dir)
    answer = respond(qa, args.question, current.canonical_text())  # as chat answers it
    print(with_hint(answer, texts.question_hint(args.question)))
    if args.explain:
        refs = "、".join(answer.refs) or "无"
        print(f"[{KIND_LABELS.get(answer.kind, answer.kind)}] 引用/最接近：{refs}；分数 {answer.score:.3f}", file=sys.stderr)
    return 0
