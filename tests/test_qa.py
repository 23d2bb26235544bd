"""The agreement Q&A (bot/qa): answers, abstentions, small talk, the data files and their
overrides, the measured targets, and the two commands. Pure: no servers."""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import time
from pathlib import Path

import jieba
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bot import texts
from bot.agreement import load_seed
from bot.qa import DEFAULT_DATA_DIR, QA, QADataError, QuestionFileError, evaluate
from bot.qa.data import merge
from bot.qa.evaluate import TARGETS, leave_one_out
from bot.qa.units import attach_examples, units_of
from service import cli

DEV = DEFAULT_DATA_DIR / "dev.jsonl"
HOLDOUT = DEFAULT_DATA_DIR / "holdout.jsonl"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jieba-cache")


@pytest.fixture(scope="module")
def qa(cache_dir) -> QA:
    return QA.build(load_seed(), cache_dir=cache_dir)


def _questions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _quoted(text: str) -> list[str]:
    """The verbatim pieces inside the reply's “…” quote."""
    start, end = text.index("“") + 1, text.index("”\n")
    return [piece for piece in text[start:end].split("……") if piece]


# -- known questions land on their clauses -------------------------------------------------


@pytest.mark.parametrize(
    "question, ref",
    [
        ("我不用了你们还能用我的商家信息吗", "4.2"),
        ("能用你们的logo做广告吗", "1.3"),
        ("能用你们的ＬＯＧＯ做广告吗", "1.3"),  # full-width folds to half-width
        ("我上传的图片版权归谁？", "4.1"),
        ("我的账号密码可以借给同事吗", "2.3"),
        ("协议改了多久生效", "7.1"),
        ("你们倒闭了我的数据怎么办", "5.3"),
        ("可以用爬虫抓你们的数据吗", "1.2"),
        ("怎么联系人工客服", "7.6"),
    ],
)
def test_known_questions_land_on_their_clauses(qa, question, ref):
    answer = qa.answer(question)
    assert answer.kind == "answer", answer
    assert answer.refs == (ref,)
    assert answer.score > 0


def test_the_answer_quotes_the_clause_verbatim_and_names_it(qa):
    answer = qa.answer("我上传的图片版权归谁？")
    clause = load_seed().sections[3].clauses[0]
    assert "第4节《您在我们服务中发布的内容》第4.1款" in answer.text
    assert "回复“条款 4”阅读全文" in answer.text
    assert "属于您的内容依然归您所有" in answer.text
    assert all(piece in clause for piece in _quoted(answer.text))


def test_a_long_clause_is_quoted_by_its_relevant_sentence_not_whole(qa):
    clause = load_seed().sections[3].clauses[1]  # 4.2, some 500 characters
    answer = qa.answer("我不用了你们还能用我的商家信息吗")
    pieces = _quoted(answer.text)
    assert "该项许可在您停止使用我们的服务后依然有效" in "".join(pieces)
    assert all(piece in clause for piece in pieces)
    assert sum(map(len, pieces)) < len(clause) / 2


@pytest.mark.parametrize("question", ["协议修改了什么时候生效", "修改协议会对以前的事情生效吗"])
def test_a_sentence_is_quoted_with_the_one_that_qualifies_it(qa, question):
    # 7.1 quoted "……会在公布一周或更长时间后方始生效。" alone: read as true of every change.
    quoted = "".join(_quoted(qa.answer(question).text))
    assert "公布一周或更长时间后方始生效。但是,对服务新功能的特别修改或由于法律原因所作的修改将立即生效" in quoted, quoted


def test_questions_with_command_words_are_answered_from_the_agreement(qa):
    answer = qa.answer("使用你们的服务就等于同意协议了吗")
    assert answer.kind == "answer" and answer.refs == ("前言.3",)
    assert "您使用我们的服务即表示您已同意本协议的全部条款" in answer.text
    assert "前言" in answer.text and "回复“条款”" in answer.text


def test_every_quote_of_the_measured_sets_is_verbatim(qa):
    units = {u.ref: u for u in qa.units}
    answered = 0
    for item in _questions(DEV) + _questions(HOLDOUT):
        answer = qa.answer(item["q"])
        if answer.kind == "answer":
            answered += 1
            assert all(piece in units[answer.refs[0]].text for piece in _quoted(answer.text)), item
    assert answered > 100


# -- abstaining ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "question",
    [
        "今天天气怎么样", "你们的软件多少钱", "退款多久到账", "给我讲个笑话", "快递什么时候到", "红烧肉怎么做", "手机充电很慢怎么办",
        # Words the agreement has in another sense: 老板 is no 企业 (6.1), 微信 is one word (not 微 + 信封).
        "你们老板是谁", "我的公众号被微信封了,你们能帮忙解封吗",
    ],
)
def test_out_of_scope_questions_are_not_answered(qa, question):
    answer = qa.answer(question)
    assert answer.kind == "abstain", answer
    assert "没有找到能回答这个问题的条款" in answer.text
    assert texts.CONTACT in answer.text
    for unit in qa.units:  # no clause is quoted, not even in part
        assert not any(len(s) > 12 and s[:12] in answer.text for s in unit.sentences), unit.ref


def test_lone_characters_in_a_row_count_as_one_unknown_word(qa):
    # jieba (HMM off) cuts words it does not know into characters; counted as
    # characters they weighed next to nothing, and "忘了续费会怎么样,数据会被删吗"
    # was answered from the clause on deleting features (5.1).
    groups = dict((terms[0], factor) for terms, factor in qa.analyzer.groups("忘了续费会怎么样"))
    assert groups.get("续费") == 1.0, groups
    assert "续" not in groups and "费" not in groups
    assert qa.analyzer.groups("网") == [(("网",), qa.settings.char_weight)]  # one alone stays light


def test_stop_words_are_cut_whole(qa):
    # jieba cut 要不要 into 要 / 不要, and 不要, no stop word, then weighed like a content
    # word ("…要不要告诉你们" leaned on it); every stop word must come out of jieba whole.
    cut_apart = [w for w in qa.analyzer.stopwords if len(w) > 1 and w.isalnum() and qa.analyzer.tokens(w) != [w]]
    assert cut_apart == []
    assert qa.analyzer.groups("要不要") == []


def test_abstaining_offers_the_nearest_sections(qa):
    answer = qa.answer("手机充电很慢怎么办")
    assert answer.kind == "abstain"
    assert answer.refs and all(ref.isdigit() or ref == "前言" for ref in answer.refs)
    assert len(answer.refs) <= 3
    first = load_seed().section(int(answer.refs[0]))
    assert f"第{first.number}节《{first.title}》" in answer.text
    assert f"回复“条款 {first.number}”" in answer.text


def test_a_question_without_content_asks_for_one(qa):
    answer = qa.answer("？？？")
    assert answer.kind == "abstain" and answer.refs == () and answer.score == 0
    assert texts.CONTACT in answer.text


@pytest.mark.parametrize("message", ["帮助我看看协议", "协议", "把协议给我看看", "我想看一下条款"])
def test_asking_for_the_agreement_itself_is_no_question_about_a_clause(qa, message):
    # "协议" alone was answered with 7.2 (the clause that says 本协议 most briefly).
    answer = qa.answer(message)
    assert answer.kind == "abstain" and answer.refs == ()
    assert "条款" in answer.text
    # With a real question the same words still count.
    assert qa.answer("协议会改吗").refs == ("7.1",)


# -- small talk ----------------------------------------------------------------------------


@pytest.mark.parametrize("message", ["你好", "在吗？", "您好呀", "hello!", "Ｈｉ", "谢谢", "好的，谢谢！", "thanks", "再见",
                                     "谢谢你的解答", "感谢您的帮助", "Thank you", "多谢你的耐心解答"])
def test_greetings_and_thanks_get_a_short_reply_with_the_help_menu(qa, message):
    answer = qa.answer(message)
    assert answer.kind == "smalltalk", answer
    assert answer.score == 0 and answer.refs == ()
    assert answer.text.endswith(texts.HELP)


def test_every_listed_small_talk_phrase_alone_is_small_talk(qa):
    # jieba splits some of them ("哈喽" -> 哈 / 喽); the whole phrase still counts.
    from bot.qa.data import load_data

    lexicon = load_data(DEFAULT_DATA_DIR).lexicon
    missed = [w for group in lexicon.smalltalk.values() for w in group if qa.answer(w + "！").kind != "smalltalk"]
    assert missed == []


def test_a_greeting_with_a_question_is_answered(qa):
    answer = qa.answer("你好，我上传的图片版权归谁？")
    assert answer.kind == "answer" and answer.refs == ("4.1",)


def test_thanks_and_greetings_differ(qa):
    assert qa.answer("谢谢").text != qa.answer("你好").text


# -- replies fit -------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from("我你的是吗版权帐号密码协议修改删除图片服务公司logo ，。？!abc123　ＡＢ✨"), max_size=400))
def test_any_message_gets_a_reply_that_fits(qa, message):
    answer = qa.answer(message)
    assert answer.kind in ("answer", "abstain", "smalltalk")
    assert 0 < len(answer.text) <= 600
    assert (answer.kind == "answer") == bool(answer.refs and "." in answer.refs[0])


def test_the_measured_questions_get_replies_that_fit(qa):
    for item in _questions(DEV) + _questions(HOLDOUT):
        assert len(qa.answer(item["q"]).text) <= 600, item


# -- the measured targets ------------------------------------------------------------------


def test_dev_set_meets_the_targets(qa):
    figures = evaluate(qa, DEV)
    assert figures["in_scope"] >= 120 and figures["out_of_scope"] >= 30
    assert figures["top1"] >= TARGETS["top1"], figures["misses"]
    assert figures["abstain_recall"] >= TARGETS["abstain_recall"], figures["misses"]
    assert figures["false_abstain"] <= TARGETS["false_abstain"], figures["misses"]


def test_dev_set_covers_every_clause():
    refs = {ref for item in _questions(DEV) for ref in item["expected"]}
    assert {u.ref for u in units_of(load_seed())} <= refs


def test_examples_are_not_the_measured_questions(qa):
    blind = [item for name in ("blind.jsonl", "blind2.jsonl", "blind3.jsonl", "blind4.jsonl", "round3.jsonl", "round4.jsonl", "round5.jsonl", "round6.jsonl", "round7.jsonl", "review.jsonl") for item in _questions(DEFAULT_DATA_DIR / name)]
    measured = {item["q"] for item in _questions(DEV) + _questions(HOLDOUT) + blind}
    examples = {q for entry in qa.data.clauses for q in entry.examples} | set(qa.data.out_of_scope)
    assert not measured & examples


@pytest.mark.parametrize("name, floor", [("round3.jsonl", 0.95), ("round4.jsonl", 0.90), ("round5.jsonl", 0.87), ("round6.jsonl", 0.90), ("round7.jsonl", 0.93), ("blind4.jsonl", 0.86), ("holdout.jsonl", 0.95), ("review.jsonl", 1.0)])
def test_later_question_sets_keep_their_figures(qa, name, floor):
    # A lexicon edit that mends one question must not quietly cost others
    # (data/qa/README.md: each round's change was kept only if no set got worse).
    figures = evaluate(qa, DEFAULT_DATA_DIR / name)
    assert figures["top1"] >= floor, figures["misses"]


def test_leave_one_out_on_the_examples_is_in_its_calibrated_range(qa):
    figures = leave_one_out(qa)
    assert figures["in_scope"] >= 300
    assert figures["top1"] >= 0.8
    # 0.85, not 0.9, since the out-of-scope examples include the blind sets' (see
    # data/qa/README.md): many are the only one of their topic, so left out they have
    # nothing to be refused by. The measured sets are the targets' test.
    assert figures["abstain_recall"] >= 0.85
    assert figures["false_abstain"] <= 0.06


def test_answering_is_fast(qa):
    questions = [item["q"] for item in _questions(DEV)]
    timings = []
    for q in questions * 3:
        t = time.perf_counter()
        qa.answer(q)
        timings.append(time.perf_counter() - t)
    assert statistics.median(timings) < 0.002  # the target is 1 ms; CI machines vary


# -- the data files, overrides, rebuilding ---------------------------------------------------


def test_an_override_synonym_makes_an_abstained_question_answer(qa, tmp_path, cache_dir):
    question = "我可以把账号出租吗"
    assert qa.answer(question).kind == "abstain"
    (tmp_path / "lexicon.toml").write_text('[synonyms]\n"出租" = ["他人", "共享"]\n', encoding="utf-8")
    rebuilt = QA.build(load_seed(), override_dir=tmp_path, cache_dir=cache_dir)
    answer = rebuilt.answer(question)
    assert answer.kind == "answer" and answer.refs == ("2.3",)
    # The override extends: the shipped synonyms still work.
    assert rebuilt.answer("能用你们的logo做广告吗").refs == ("1.3",)


def test_rebuild_reads_the_override_directory_as_it_is_now(tmp_path, cache_dir):
    qa = QA.build(load_seed(), override_dir=tmp_path, cache_dir=cache_dir)
    question = "我可以把账号出租吗"
    assert qa.answer(question).kind == "abstain"
    (tmp_path / "lexicon.toml").write_text('[synonyms]\n"出租" = ["他人", "共享"]\n', encoding="utf-8")
    assert qa.answer(question).kind == "abstain"  # the built index does not change by itself
    assert qa.rebuild().answer(question).refs == ("2.3",)


def test_an_override_setting_replaces_the_shipped_value(qa, tmp_path, cache_dir):
    (tmp_path / "settings.toml").write_text("[answer]\nmin_score = 1000.0\n", encoding="utf-8")
    strict = QA.build(load_seed(), override_dir=tmp_path, cache_dir=cache_dir)
    assert strict.settings.min_score == 1000.0 != qa.settings.min_score
    assert strict.settings.k1 == qa.settings.k1
    assert strict.answer("我上传的图片版权归谁？").kind == "abstain"


def test_the_merge_rule():
    base = {"words": ["a", "b"], "synonyms": {"x": ["1"], "y": ["2"]}, "answer": {"min_score": 0.5, "k": 1}}
    extra = {"words": ["b", "c"], "synonyms": {"x": ["3"]}, "answer": {"min_score": 0.7}}
    assert merge(base, extra) == {
        "words": ["a", "b", "c"],
        "synonyms": {"x": ["1", "3"], "y": ["2"]},
        "answer": {"min_score": 0.7, "k": 1},
    }
    assert merge(base, {"replace": True, "words": ["z"]}) == {"words": ["z"]}


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("lexicon.toml", "words = [", "不是有效的 TOML"),
        ("lexicon.toml", "[synonyms]\n\"版权\" = \"著作权\"\n", "[synonyms]"),
        ("settings.toml", "[answer]\nmin_score = \"high\"\n", "min_score"),
        ("settings.toml", "[ranking]\nk9 = 1\n", "未知的字段"),
        ("examples.toml", "[clauses.\"4.1\"]\nexamples = [1]\n", "examples"),
    ],
)
def test_a_malformed_data_file_is_refused_in_chinese(tmp_path, cache_dir, name, content, needle):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(QADataError) as info:
        QA.build(load_seed(), override_dir=tmp_path, cache_dir=cache_dir)
    assert needle in info.value.message and name in info.value.message


def test_a_missing_data_directory_is_refused(tmp_path, cache_dir):
    with pytest.raises(QADataError, match="问答数据文件不存在"):
        QA.build(load_seed(), data_dir=tmp_path, cache_dir=cache_dir)


def test_examples_follow_their_anchor_when_clauses_move(qa, caplog):
    seed = load_seed()
    section = seed.sections[3]
    swapped = dataclasses.replace(section, clauses=(section.clauses[1], section.clauses[0], *section.clauses[2:]))
    moved = dataclasses.replace(seed, sections=(*seed.sections[:3], swapped, *seed.sections[4:]))
    units = units_of(moved)
    attached = dict(zip((u.ref for u in units), attach_examples(units, qa.data.clauses)))
    assert "我上传的照片所有权是谁的" in attached["4.2"]  # 4.1's example, now on 4.2
    assert "我注销以后你们还能用我的商家资料吗" in attached["4.1"]

    gone = dataclasses.replace(seed, sections=seed.sections[:6])  # no section 7
    units = units_of(gone)
    with caplog.at_level(logging.WARNING, logger="bot.qa.units"):
        attached = attach_examples(units, qa.data.clauses)
    assert sum(map(len, attached)) < sum(len(e.examples) for e in qa.data.clauses)
    assert "7.2" in caplog.text


def test_jieba_is_private_and_cached(qa, cache_dir):
    assert list(cache_dir.glob("*.cache")), "jieba's cache is written to cache_dir"
    assert jieba.dt.FREQ.get("微社区") is None  # the global tokenizer knows nothing of the lexicon
    assert qa.analyzer.tokens("微社区的登录码") == ["微社区", "的", "登录码"]


# -- evaluation files and the commands -----------------------------------------------------


def test_evaluate_refuses_missing_and_malformed_files(qa, tmp_path):
    with pytest.raises(QuestionFileError, match="问题文件不存在"):
        evaluate(qa, tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "版权归谁", "expected": ["4.1"]}\n{"q": "少了括号"\n', encoding="utf-8")
    with pytest.raises(QuestionFileError, match="第 2 行"):
        evaluate(qa, bad)
    bad.write_text('{"q": "版权归谁", "expected": "4.1"}\n', encoding="utf-8")
    with pytest.raises(QuestionFileError, match="expected"):
        evaluate(qa, bad)
    bad.write_text('{"q": "版权归谁", "expected": ["9.9"]}\n', encoding="utf-8")
    with pytest.raises(QuestionFileError, match="9.9"):
        evaluate(qa, bad)


def test_evaluate_counts_what_it_says(qa, tmp_path):
    path = tmp_path / "small.jsonl"
    lines = [
        {"q": "我上传的图片版权归谁？", "expected": ["4.1"]},  # right
        {"q": "我上传的图片版权归谁？", "expected": ["7.6"]},  # answered, wrong clause
        {"q": "今天天气怎么样", "expected": []},  # abstained, rightly
        {"q": "今天天气怎么样", "expected": ["1.1"]},  # abstained, wrongly
    ]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    f = evaluate(qa, path)
    assert (f["in_scope"], f["out_of_scope"]) == (3, 1)
    assert f["top1"] == pytest.approx(1 / 3)
    assert f["wrong_answer"] == pytest.approx(1 / 3)
    assert f["false_abstain"] == pytest.approx(1 / 3)
    assert f["abstain_recall"] == 1.0 and f["abstain_precision"] == pytest.approx(1 / 2)
    assert len(f["misses"]) == 2


def test_qa_eval_prints_the_figures(capsys, cache_dir):
    assert cli.main(["qa-eval", "--cache-dir", str(cache_dir), "--check"]) == 0
    out = capsys.readouterr().out
    for label in ("top-1 准确率", "top-3 准确率", "MRR", "拒答精确率", "拒答召回率", "范围内误拒答率"):
        assert label in out
    assert "dev.jsonl" in out


def test_qa_eval_on_a_missing_or_malformed_file_exits_2_in_chinese(capsys, tmp_path, cache_dir):
    assert cli.main(["qa-eval", str(tmp_path / "none.jsonl"), "--cache-dir", str(cache_dir)]) == 2
    assert "问题文件不存在" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("这不是 JSON\n", encoding="utf-8")
    assert cli.main(["qa-eval", str(bad), "--cache-dir", str(cache_dir)]) == 2
    err = capsys.readouterr().err
    assert "不是有效的 JSON" in err and "Traceback" not in err


def test_ask_prints_the_reply_a_user_would_get(capsys, qa, cache_dir):
    assert cli.main(["ask", "我上传的图片版权归谁？", "--cache-dir", str(cache_dir)]) == 0
    assert capsys.readouterr().out.strip() == qa.answer("我上传的图片版权归谁？").text.strip()
    # With the hint chat adds under the answer.
    assert cli.main(["ask", "怎么注销账户", "--cache-dir", str(cache_dir)]) == 0
    assert capsys.readouterr().out.strip().endswith("回复“注销账户”可注销商家账户（同意记录会保留）。")
    assert cli.main(["ask", "同意协议以后还能撤回吗", "--cache-dir", str(cache_dir)]) == 0
    assert capsys.readouterr().out.strip().endswith("回复“撤回同意”即可撤回您对协议的同意。")
    # As chat: a topic the agreement does not cover is said so, and "how do I" gets the how alone.
    assert cli.main(["ask", "这个要钱吗", "--cache-dir", str(cache_dir)]) == 0
    assert "没有关于价格" in capsys.readouterr().out
    assert cli.main(["ask", "我要改手机号", "--cache-dir", str(cache_dir)]) == 0
    assert capsys.readouterr().out.strip() == texts.EDIT_PROFILE_HINT
    # A command gets the command's reply in chat, not the Q&A's: said so.
    assert cli.main(["ask", "条款 4", "--cache-dir", str(cache_dir)]) == 0
    assert "是公众号指令（条款）" in capsys.readouterr().out
    # Questions chat answers from the published versions get that answer here too (it quoted 7.1) …
    assert cli.main(["ask", "协议最近改了什么", "--cache-dir", str(cache_dir)]) == 0
    assert "以来没有修改过" in capsys.readouterr().out
    assert cli.main(["ask", "不同意会怎样", "--cache-dir", str(cache_dir)]) == 0
    assert capsys.readouterr().out.strip().startswith(texts.what_declining_does(None, None).split("\n")[0])
    # … and one chat answers from the asker's record is said to be one.
    assert cli.main(["ask", "我同意了吗", "--cache-dir", str(cache_dir)]) == 0
    assert "按发问用户的同意记录回答" in capsys.readouterr().out
    assert cli.main(["ask", "  ", "--cache-dir", str(cache_dir)]) == 2
    assert "问题不能为空" in capsys.readouterr().err
    assert cli.main(["ask", "图片" * 101, "--cache-dir", str(cache_dir)]) == 2
    assert "问题太长了，请控制在 200 个字以内" in capsys.readouterr().err


@pytest.mark.parametrize("item", _questions(DEFAULT_DATA_DIR / "review.jsonl"), ids=lambda item: item["q"])
async def test_a_reviewers_misses_are_answered_in_chat_with_their_clauses(service, item):
    # 我被人侵权了咋整 quoted 3.2 (we close repeat infringers' accounts), not 3.3 (how to tell us);
    # 你们会把我的数据卖给别人吗 and 账号可以转让吗 found nothing (data/qa/review.jsonl).
    reply = await service.wechat.ask("o-review", item["q"])
    assert reply.startswith("根据《微拓软件服务使用协议》") and f"第{item['expected'][0]}款" in reply, reply


async def test_a_question_too_long_is_refused_in_chat_and_the_app_alike(service):
    # Chat had no limit: a paste of 21,000 characters took 0.4 s of the event
    # loop to match, and a million-character one was stored in the question log.
    long = "我上传的图片版权归谁？" * 19  # 209 characters
    reply = await service.wechat.ask("o-long", long)
    assert reply.startswith("问题太长了，请控制在 200 个字以内")
    assert (await service.wechat.ask("o-long", long[:200])).startswith("问题太长了") is False
    await service.runtime.qa_log.flush()
    logged = await service.runtime.db["qa_log"].find({"openid": "o-long"}).to_list(None)
    assert [len(d["question"]) for d in logged] == [200]
    # A text push without Content asks nothing: answered, not listed among the unanswered questions.
    from tests.wx import message_xml
    blank = await service.wechat.post(message_xml("o-blank", "text", ""))
    assert blank.code == 200
    await service.runtime.qa_log.flush()
    assert await service.runtime.db["qa_log"].count_documents({"openid": "o-blank"}) == 0


async def test_the_question_log_cli_shows_beijing_time(make_service, backing):
    # It printed UTC with no zone (19:02), where every other command and the
    # console's 问答 page show Beijing time (03:02 the next day).
    import asyncio
    import datetime as dt

    from bot.agreement import CHINA
    from tests.test_cli import BIN, clean_env

    svc = await make_service()
    runtime = svc.runtime
    await svc.wechat.ask("o-log", "我上传的图片版权归谁？")
    await runtime.qa_log.flush()
    env = clean_env(MONGODB_URI=backing.database_uri(runtime.db.name), REDIS_URL=backing.redis_url)
    proc = await asyncio.create_subprocess_exec(str(BIN), "qa-log", env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    now = dt.datetime.now(dt.timezone.utc)
    shown = {(now + dt.timedelta(minutes=m)).astimezone(CHINA).strftime("%Y-%m-%d %H:%M") for m in (-1, 0)}
    assert "北京时间" in text and any(f"{s}  [引用协议条款] 我上传的图片版权归谁？" in text for s in shown), text


@pytest.mark.parametrize("question", ["协议更新了哪些内容", "这次修改的内容是什么"])
def test_what_changed_points_to_the_amendment_clause_not_to_content(qa, question):
    # "内容" matched section 4's title (您在我们服务中发布的内容): 4.2 was quoted.
    answer = qa.answer(question)
    assert answer.refs == ("7.1",), answer


@pytest.mark.parametrize("mixed, twin", [
    ("你们如何保护我的privacy", "你们如何保护我的隐私"),
    ("你们会使用我的data吗", "你们会使用我的数据吗"),
    ("我的account密码被盗了怎么办", "我的帐户密码被盗了怎么办"),
])
def test_english_words_in_a_question_count_as_their_chinese_twins(qa, mixed, twin):
    # privacy, data: the question abstained (the lexicon knew copyright, logo, app …).
    got, expected = qa.answer(mixed), qa.answer(twin)
    assert got.kind == "answer" and got.refs == expected.refs, (got.kind, got.refs, expected.refs)


def test_a_question_that_is_an_example_is_answered_with_its_clause(tmp_path):
    # An admin added an unanswered question as 5.2's example in the console: asked word
    # for word, it was still refused (answers never rest on the examples alone).
    from bot.agreement import load_seed
    from bot.qa.engine import QA

    (tmp_path / "examples.toml").write_text('[clauses."5.2"]\nexamples = ["不想干了怎么办"]\n', encoding="utf-8")
    qa = QA.build(load_seed(), override_dir=tmp_path)
    for asked in ("不想干了怎么办", "不想干了，怎么办？", " 不想干了 怎么办 "):
        answer = qa.answer(asked)
        assert (answer.kind, answer.refs) == ("answer", ("5.2",)), (asked, answer)
    assert qa.answer("不想干了怎么办呢").kind == "abstain"  # other words: the usual rules


def test_jiebas_cache_is_never_read_from_a_directory_another_user_can_write(tmp_path, monkeypatch):
    # The CLI's default was a directory of a fixed name in /tmp, used whoever
    # had made it: another local user could replace the cache jieba loads
    # (with marshal) and change every answer.
    import os

    from bot.qa.analyzer import default_cache_dir, private_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    assert default_cache_dir() == tmp_path / "home-cache" / "wetoop-bot" / "jieba"
    own = private_dir(tmp_path / "own")
    assert own == tmp_path / "own" and own.stat().st_mode & 0o077 == 0
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    instead = private_dir(shared)
    assert instead != shared and instead.stat().st_mode & 0o077 == 0
    # Without a home directory nothing is made there (root with HOME=/nonexistent made it).
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "nonexistent"))
    assert default_cache_dir() is None and private_dir(None).is_dir()
    assert not (tmp_path / "nonexistent").exists()
    if os.getuid() == 0:  # only root can give a directory away
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o755)
        os.chown(theirs, 65534, -1)
        assert private_dir(theirs) != theirs
