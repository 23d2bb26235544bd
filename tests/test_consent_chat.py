"""The agreement and consent in chat, over real HTTP, MongoDB and Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json

import pytest
from tornado.httpclient import AsyncHTTPClient

from bot import chat as product_chat
from bot import texts
from bot.agreement import Section, load_seed
from bot.gate import require_consent
from bot.replies import Reply
from bot.router import Router
from tests.wx import event_xml, text_xml


def amendment(version: str, changes=("第1节第6款：简化表述",), long_section: bool = False):
    seed = load_seed()
    first = seed.sections[0]
    clauses = first.clauses[:-1] + ("我们的部分服务可在移动设备上使用。",)
    sections = (dataclasses.replace(first, clauses=clauses),) + seed.sections[1:]
    if long_section:
        long_clauses = tuple(f"第{i}条附加说明：" + "商家在使用智慧营销系统时应遵守平台规则。" * 6 for i in range(1, 16))
        sections += (Section(8, "附加说明", "新增的附加说明。", long_clauses),)
    return dataclasses.replace(seed, version=version, changes=changes, sections=sections)


async def ledger(svc, openid: str) -> list:
    return await svc.runtime.ledger.history(openid)


async def sent_to(emulator, openid: str, settle: float = 0.3) -> list[str]:
    """Customer-service texts the emulator received for ``openid`` once sending settles."""
    previous = -1
    texts_seen: list[str] = []
    for _ in range(40):
        texts_seen = [m["body"]["text"]["content"] for m in await emulator.messages(openid)]
        if texts_seen and len(texts_seen) == previous:
            return texts_seen
        previous = len(texts_seen)
        await asyncio.sleep(settle / 3)
    return texts_seen


# -- follow, read ---------------------------------------------------------------------


async def test_follow_welcomes_with_summary_and_prompt(service):
    response = await service.wechat.post(event_xml("o-new", "subscribe"))
    text = service.wechat.reply(response)["Content"]
    seed = load_seed()
    assert text.startswith("欢迎关注微拓")
    for line in seed.summary:
        assert line in text
    assert "回复“条款”" in text and "条款 N" in text
    assert "回复“同意”" in text and "“不同意”" in text and "2022-05-22" in text
    assert text.count("回复“条款”") == 1, text  # how to read it, said once (the prompt said it again)


async def test_terms_lists_sections_with_summaries(service):
    text = await service.wechat.ask("o-read", "条款")
    seed = load_seed()
    for section in seed.sections:
        assert f"{section.number}. {section.title}：{section.summary}" in text
    assert "即将生效" not in text


@pytest.mark.parametrize("command", ["条款 4", "条款4", "条款　４", "协议 4"])
async def test_terms_n_shows_the_section_verbatim(service, command):
    text = await service.wechat.ask("o-read", command)
    section = load_seed().sections[3]
    assert f"第4节 {section.title}" in text
    for i, clause in enumerate(section.clauses):
        assert f"4.{i + 1} {clause}" in text


async def test_the_preamble_can_be_read(service):
    # It holds 「您使用我们的服务即表示您已同意本协议的全部条款」, the Q&A cites it (前言.2),
    # and no command showed it.
    assert "回复“条款 前言”阅读协议前言" in await service.wechat.ask("o-pre", "条款")
    seed = load_seed()
    for command in ("条款 前言", "协议：前言", "条款 2022-05-22 前言"):
        text = await service.wechat.ask("o-pre", command)
        assert "前言" in text and all(f"{i}. {p}" in text for i, p in enumerate(seed.preamble, start=1)), text


@pytest.mark.parametrize("sent, needle", [("7.1", "7.1 "), ("第4.2款", "4.2 "), ("第三节", "第3节"), ("4.9", "没有第 4.9 款")])
async def test_a_place_in_the_agreement_sent_alone_is_shown(service, sent, needle):
    # 7.1 alone, as the Q&A cites clauses, was a question that found nothing.
    reply = await service.wechat.ask("o-bare", sent)
    assert needle in reply and "没有找到" not in reply, reply


@pytest.mark.parametrize("command", ["条款 0", "条款 8", "条款 99"])
async def test_terms_n_out_of_range(service, command):
    text = await service.wechat.ask("o-read", command)
    assert "没有第" in text and "条款 7" in text


async def test_long_section_continues_through_customer_service(make_service, emulator, clock):
    svc = await make_service(clock=clock)
    await svc.runtime.terms.publish(amendment("2026-12-02", changes=("第1节第6款：简化表述", "第8节：新增附加说明"), long_section=True), reason="new_feature", effective_at=None, by="test")
    passive = await svc.wechat.ask("o-long", "条款 8")
    assert passive.endswith(texts.CONTINUED) and len(passive.encode()) <= 2048
    rest = await sent_to(emulator, "o-long")
    assert rest and all(len(p.encode()) <= 2048 for p in rest)
    whole = "\n".join(p.removesuffix(texts.CONTINUED) for p in [passive, *rest])
    section = (await svc.runtime.terms.current()).section(8)
    for i, clause in enumerate(section.clauses):
        assert f"8.{i + 1} {clause}" in whole


async def test_a_long_clause_continues_after_a_whole_sentence(make_service, emulator, clock):
    # One clause over 2048 bytes was cut at the byte limit: "…行为承担（未完，见下一条消息）" / "责任。…".
    svc = await make_service(clock=clock)
    long_clause = "".join(f"第{i}项：商家应对其在平台上发布的内容和经营行为承担全部法律责任。" for i in range(1, 40))
    version = amendment("2026-12-02", changes=("第1节第6款：简化表述", "第8节：新增附加说明"))
    version = dataclasses.replace(version, sections=version.sections + (Section(8, "附加说明", "新增的附加说明。", (long_clause,)),))
    await svc.runtime.terms.publish(version, reason="new_feature", effective_at=None, by="test")
    passive = await svc.wechat.ask("o-long-clause", "条款 8")
    rest = await sent_to(emulator, "o-long-clause")
    pieces = [passive, *rest]
    assert len(pieces) >= 2 and all(len(p.encode()) <= 2048 for p in pieces)
    assert all(p.endswith("责任。" + texts.CONTINUED) for p in pieces[:-1]), pieces
    assert all(p.startswith("第") for p in rest), rest
    assert long_clause in "".join(p.removesuffix(texts.CONTINUED) for p in pieces)


async def test_the_rest_of_a_long_reply_survives_a_busy_wechat(make_service, emulator, clock):
    # One -1 on the first continuation used to end the reply there, silently.
    svc = await make_service(clock=clock)
    await svc.runtime.terms.publish(amendment("2026-12-02", changes=("第1节第6款：简化表述", "第8节：新增附加说明"), long_section=True), reason="new_feature", effective_at=None, by="test")
    await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/custom/send", "errcode": -1, "times": 1})
    passive = await svc.wechat.ask("o-busy", "条款 8")
    assert passive.endswith(texts.CONTINUED)
    rest = await sent_to(emulator, "o-busy", settle=1.0)
    whole = "\n".join(p.removesuffix(texts.CONTINUED) for p in [passive, *rest])
    section = (await svc.runtime.terms.current()).section(8)
    assert f"8.{len(section.clauses)} {section.clauses[-1]}" in whole


# -- consent ----------------------------------------------------------------------------


async def test_a_msgid_reused_by_another_sender_gets_its_own_reply(service):
    # Hand-made pushes (the README's) reuse MsgIds: the second sender got the
    # first one's reply, which may be private (我的账户).
    first = service.wechat.reply(await service.wechat.post(text_xml("o-first", "帮助", msg_id=770001)))["Content"]
    second = service.wechat.reply(await service.wechat.post(text_xml("o-second", "条款", msg_id=770001)))["Content"]
    assert first != second and second.startswith("《微拓软件服务使用协议》版本")


async def test_accept_is_recorded_once_even_when_retried(service):
    xml = text_xml("o-yes", "同意", msg_id=880001)
    first = service.wechat.reply(await service.wechat.post(xml))["Content"]
    second = service.wechat.reply(await service.wechat.post(xml))["Content"]
    assert first == second and "已记录" in first and "2022-05-22" in first
    records = await ledger(service, "o-yes")
    assert len(records) == 1
    record = records[0]
    assert (record.action, record.version, record.channel) == ("accept", "2022-05-22", "official_account")
    assert record.text_sha256 == load_seed().text_sha256
    assert record.message_id.startswith("msg:") and record.message_id.endswith(":880001")
    assert record.meta["msg_type"] == "text"
    assert record.at.tzinfo is not None

    again = await service.wechat.ask("o-yes", "同意")
    assert "无需重复" in again
    assert len(await ledger(service, "o-yes")) == 1


async def test_accept_records_the_version_another_process_made_effective_a_moment_ago(service):
    # The versions are cached for up to 5 s; 同意 records the version in force as stored.
    from bot.terms import Terms

    runtime = service.runtime
    assert "2022-05-22" in await service.wechat.ask("o-fresh", "条款")  # the cache is warm
    other = Terms(runtime.versions, runtime.broadcasts, runtime.clock, locks=runtime.locks)
    await other.publish(amendment("2026-11-20"), reason="legal", effective_at=None, by="cli")
    # Not shown that version yet: it is shown (nothing recorded), then accepted.
    assert "您的“同意”尚未记录" in await service.wechat.ask("o-fresh", "同意")
    assert "2026-11-20" in await service.wechat.ask("o-fresh", "同意")
    assert [r.version for r in await ledger(service, "o-fresh")] == ["2026-11-20"]


async def test_consent_said_in_a_sentence_is_not_recorded_and_the_reply_says_how(service):
    for sentence in ("那我同意吧", "好的我同意"):
        reply = await service.wechat.ask("o-sentence", sentence)
        assert "请单独回复“同意”" in reply
    assert await ledger(service, "o-sentence") == []
    assert "需要您先同意" in await service.wechat.ask("o-sentence", "我要注册")  # the command, consent first
    # A refusal in a sentence is pointed to 不同意 (and 撤回同意 for one who accepted), never to 同意.
    for sentence in ("我不同意协议", "我不同意了", "我不想同意了"):
        reply = await service.wechat.ask("o-sentence", sentence)
        assert "单独回复“不同意”" in reply and "请单独回复“同意”" not in reply, reply
    assert await ledger(service, "o-sentence") == []


async def test_two_menu_clicks_in_one_second_are_both_handled(service):
    at = 1_790_000_000
    first = await service.wechat.post(event_xml("o-quick", "CLICK", "HELP", create_time=at))
    second = await service.wechat.post(event_xml("o-quick", "CLICK", "CONSENT_ACCEPT", create_time=at))
    assert "已记录" in service.wechat.reply(second)["Content"]
    assert service.wechat.reply(first)["Content"] != service.wechat.reply(second)["Content"]
    assert [r.action for r in await ledger(service, "o-quick")] == ["accept"]
    # WeChat's retry of the same click is still answered once.
    again = await service.wechat.post(event_xml("o-quick", "CLICK", "CONSENT_ACCEPT", create_time=at))
    assert service.wechat.reply(again)["Content"] == service.wechat.reply(second)["Content"]
    assert len(await ledger(service, "o-quick")) == 1


async def test_consent_by_menu_click(service):
    response = await service.wechat.post(event_xml("o-menu", "CLICK", "CONSENT_ACCEPT"))
    assert "已记录" in service.wechat.reply(response)["Content"]
    assert [r.action for r in await ledger(service, "o-menu")] == ["accept"]


@pytest.mark.parametrize(
    "question",
    ["使用你们的服务就等于同意协议了吗", "我同意", "同意。", "不同意会怎样", "怎么撤回同意？"],
)
async def test_a_question_containing_consent_words_is_not_consent(service, question):
    reply = await service.wechat.ask("o-asks", question)
    assert "已记录" not in reply
    assert await ledger(service, "o-asks") == []


@pytest.mark.parametrize("text, word", [("我同意", "同意"), ("同意。", "同意"), ("我不同意！", "不同意"), ("撤销同意", "撤回同意")])
async def test_a_near_miss_of_a_consent_reply_says_what_to_reply(service, text, word):
    # Not a choice (only the exact words count), and not a quoted clause either.
    reply = await service.wechat.ask("o-near", text)
    assert reply == texts.consent_exact_words(word)
    # What it is not taken for, and the exact reply that is (it said 没有被记录为您的选择).
    assert reply.startswith(f"这条消息不会被记录为{word}：") and f"请单独回复“{word}”（" in reply, reply
    assert await ledger(service, "o-near") == []


@pytest.mark.parametrize("text", ["好的", "OK", "接受", "可以！", "嗯", "yes", "Agree", "同 意", "好的，同意", "OK，同意", "好，我同意"])
async def test_a_yes_to_the_consent_prompt_says_only_the_exact_word_counts(service, text):
    # 好的 got "不客气！", 接受 a quote of clause 6.1, 同 意 "not covered": nothing
    # said that the choice was not recorded.
    openid = f"o-yes-{abs(hash(text))}"
    assert "同意" in await service.wechat.ask(openid, "条款")
    assert await service.wechat.ask(openid, text) == texts.consent_exact_words("同意")
    assert await ledger(service, openid) == []
    await service.wechat.ask(openid, "同意")
    if "同" not in text:  # once accepted, 好的 is talk again (a 同意 among the words stays a near miss)
        assert await service.wechat.ask(openid, text) != texts.consent_exact_words("同意")


async def test_a_bare_command_with_a_keyboards_punctuation_is_not_sent_to_the_qa(service):
    # 条款？ quoted clause 7.2 and 帮助。 asked to describe the question in a sentence.
    assert await service.wechat.ask("o-punct", "条款？") == await service.wechat.ask("o-punct", "条款")
    assert await service.wechat.ask("o-punct", "帮助。") == await service.wechat.ask("o-punct", "帮助")
    assert await service.wechat.ask("o-punct", "通知设置!") == await service.wechat.ask("o-punct", "通知设置")
    assert await service.wechat.ask("o-punct", "同意！") == texts.consent_exact_words("同意")  # a choice stays exact


async def test_decline_explains_what_follows(service):
    reply = await service.wechat.ask("o-no", "不同意")
    assert "已记录" in reply and "停止" in reply and "导出我的数据" in reply and "条款" in reply
    assert [r.action for r in await ledger(service, "o-no")] == ["decline"]
    again = await service.wechat.ask("o-no", "不同意")
    # Once, not per message, and the reply says so (as a second 同意 does).
    assert [r.action for r in await ledger(service, "o-no")] == ["decline"]
    assert again.startswith("您此前已选择不同意") and "无需重复操作" in again and "已记录" not in again
    assert "导出我的数据" in again
    state = await service.runtime.consents.state("o-no")
    assert state.status == "declined"


async def test_withdraw_is_as_easy_as_accepting(service):
    assert "没有有效的同意" in await service.wechat.ask("o-w", "撤回同意")
    await service.wechat.ask("o-w", "同意")
    reply = await service.wechat.ask("o-w", "撤回同意")
    assert "撤回" in reply and "2022-05-22" in reply
    assert [r.action for r in await ledger(service, "o-w")] == ["accept", "withdraw"]
    assert (await service.runtime.consents.state("o-w")).status == "withdrawn"


@pytest.mark.parametrize("question", ["我同意了吗？", "我有没有同意协议", "我同意的是哪个版本", "同意状态", "我已经同意过了吗",
                                      "我是不是已经同意了", "同意了吗"])
async def test_asking_whether_one_accepted_gets_ones_own_status(service, question):
    # It quoted the preamble ("使用服务即表示同意") and a prompt, as if the user had asked what consent means.
    before = await service.wechat.ask("o-status", question)
    assert "您尚未同意《微拓软件服务使用协议》（版本 2022-05-22）。请回复“同意”" in before, before
    await service.wechat.ask("o-status", "同意")
    after = await service.wechat.ask("o-status", question)
    assert "同意《微拓软件服务使用协议》（版本 2022-05-22，即现行版本）" in after and after.startswith("您已于 20"), after
    assert [r.action for r in await ledger(service, "o-status")] == ["accept"]  # asking records nothing


async def test_the_status_says_which_choice_was_made_last(make_service, clock):
    svc = await make_service(clock=clock)
    assert "不会被记录为同意" in await svc.wechat.ask("o-st", "我同意了")  # a yes, not a question: only 同意 counts
    await svc.wechat.ask("o-st", "不同意")
    assert "选择了不同意（版本 2022-05-22）。请回复“同意”" in await svc.wechat.ask("o-st", "我同意了吗")
    await svc.wechat.ask("o-st", "同意")
    await svc.wechat.ask("o-st", "撤回同意")
    assert "撤回了对协议的同意（版本 2022-05-22）" in await svc.wechat.ask("o-st", "我同意了吗")
    await svc.wechat.ask("o-st", "同意")
    await svc.runtime.terms.publish(
        amendment("2026-12-09"), reason="routine", effective_at=clock.now + dt.timedelta(days=7), by="test"
    )
    clock.advance(days=7, seconds=1)
    outdated = await svc.wechat.ask("o-st", "我同意了吗")
    assert "您于 2026-12-01 10:00（北京时间）同意的是版本 2022-05-22；协议已更新为版本 2026-12-09，您尚未同意新版本" in outdated, outdated
    # "回复“条款”查看修改": 条款 shows them (it showed the section summaries only).
    overview = await svc.wechat.ask("o-st", "条款")
    changes = (await svc.runtime.terms.current()).changes
    assert changes and "本版本的修改摘要：" in overview and all(line in overview for line in changes), overview
    assert outdated.count("请回复“同意”") == 1, outdated  # the amendment's prompt and the status's: asked once
    assert outdated.count("回复“条款”") == 1, outdated
    again = await svc.wechat.ask("o-st", "同意状态")  # the status alone, the amendment's prompt shown already
    assert again.startswith("您于 2026-12-01 10:00（北京时间）同意的是版本 2022-05-22") and again.count("回复“条款”") == 1, again
    assert again.endswith("回复“条款”可先查看修改。"), again
    # A question about consent in general still gets the agreement's words.
    assert "根据《微拓软件服务使用协议》" in await svc.wechat.ask("o-st", "注册的时候协议没细看就点了，这样也算我同意了吗")


@pytest.mark.parametrize("question", ["不同意会怎样？", "如果我不同意呢", "不同意协议的话会有什么后果", "拒绝条款还能用吗", "撤回同意会怎么样",
                                      "撤回同意后还能用吗",
                                      # Changing one's mind (they got "回复同意", the preamble, a 3.2 quote, "not covered"):
                                      "同意了还能反悔吗", "我不想同意了", "我之前点了同意，现在后悔了",
                                      "撤回同意后我的商家账户会怎样", "不同意能注册吗", "可以撤回同意吗"])
async def test_asking_what_declining_does_says_what_follows_and_quotes_the_agreement(service, question):
    reply = await service.wechat.ask("o-whatif", question)
    assert reply.startswith("是否同意由您决定") and "导出我的数据" in reply, reply
    assert "协议第7.1款：“如果您不同意服务的修改条款,应停止使用服务。”" in reply
    assert await ledger(service, "o-whatif") == []


WHAT_CHANGED = ["协议最近改了什么", "条款有什么变化", "最近协议更新了哪些内容", "协议改了哪些地方", "这次修改的内容是什么？"]


async def test_asking_what_changed_answers_from_the_published_versions(make_service, clock):
    # "协议最近改了什么" quoted 7.1 (how amendments work), whatever had been published.
    svc = await make_service(clock=clock)
    for question in WHAT_CHANGED:
        reply = await svc.wechat.ask("o-changed", question)
        assert reply.startswith("《微拓软件服务使用协议》自版本 2022-05-22（2022-05-22 起生效）以来没有修改过。"), (question, reply)
    # A question about the rule itself is still the agreement's: 7.1 with its 但是… sentence.
    rule = await svc.wechat.ask("o-changed", "协议修改了什么时候生效")
    assert "第7.1款" in rule and "但是,对服务新功能的特别修改或由于法律原因所作的修改将立即生效" in rule, rule
    await svc.runtime.terms.publish(amendment("2026-12-09", changes=("第1节第6款：简化表述",)), reason="routine",
                                    effective_at=clock.now + dt.timedelta(days=7), by="test")
    coming = await svc.wechat.ask("o-changed", "协议最近改了什么")
    assert "以来没有修改过" in coming and "【即将生效】版本 2026-12-09" in coming and "· 第1节第6款：简化表述" in coming, coming
    clock.advance(days=7, seconds=1)
    overview = await svc.wechat.ask("o-changed", "条款")
    summary = "\n".join(texts.change_summary(await svc.runtime.terms.current()))
    assert summary in overview  # the change summary as 条款 shows it, reused
    for question in WHAT_CHANGED:
        reply = await svc.wechat.ask("o-changed", question)
        assert reply.startswith("《微拓软件服务使用协议》最近一次修改：版本 2026-12-09，自 2026-12-08 起生效（此前为版本 2022-05-22）。"), reply
        assert summary in reply and "回复“条款 2022-05-22 N”可阅读修改前的第 N 节" in reply, reply
    assert "第7.1款" in await svc.wechat.ask("o-changed", "协议修改了什么时候生效")


async def test_feature_needing_consent_asks_first_and_carries_on(make_service):
    router = Router()
    router.include(product_chat.router)

    @router.command("开通服务")
    async def open_service(chat):
        prompt = await require_consent(chat, "开通服务")
        return prompt or Reply("服务已开通")

    svc = await make_service(router=router)
    first = await svc.wechat.ask("o-gate", "开通服务")
    assert "需要您先同意" in first and "回复“同意”" in first
    after = await svc.wechat.ask("o-gate", "同意")
    assert "已记录" in after and after.endswith("服务已开通")
    assert await svc.wechat.ask("o-gate", "开通服务") == "服务已开通"


async def test_declining_drops_the_pending_feature(make_service):
    router = Router()
    router.include(product_chat.router)

    @router.command("开通服务")
    async def open_service(chat):
        return await require_consent(chat, "开通服务") or Reply("服务已开通")

    svc = await make_service(router=router)
    await svc.wechat.ask("o-gate2", "开通服务")
    assert "服务已开通" not in await svc.wechat.ask("o-gate2", "不同意")
    assert "服务已开通" not in await svc.wechat.ask("o-gate2", "同意")


# -- amendments -----------------------------------------------------------------------------


async def test_amendment_switches_and_asks_again(make_service, clock):
    svc = await make_service(clock=clock)
    await svc.wechat.ask("o-old", "同意")
    version, notice_id = await svc.runtime.terms.publish(
        amendment("2026-12-09"), reason="routine", effective_at=clock.now + dt.timedelta(days=7), by="test"
    )

    # Before it takes effect: still accepted, and 条款 shows what is coming.
    overview = await svc.wechat.ask("o-old", "条款")
    assert "即将生效" in overview and "2026-12-09" in overview and "第1节第6款：简化表述" in overview
    assert (await svc.runtime.consents.state("o-old")).status == "accepted"
    upcoming_section = await svc.wechat.ask("o-old", "条款 2026-12-09 1")
    assert "版本 2026-12-09" in upcoming_section and "1.6 我们的部分服务可在移动设备上使用。" in upcoming_section

    clock.advance(days=7, seconds=1)
    assert (await svc.runtime.terms.current()).version == "2026-12-09"
    state = await svc.runtime.consents.state("o-old")
    assert state.status == "outdated" and state.latest.version == "2022-05-22"

    first = await svc.wechat.ask("o-old", "帮助")
    assert first.startswith("《微拓软件服务使用协议》已更新") and "您此前同意的是版本 2022-05-22" in first
    assert first.endswith(texts.HELP)
    assert await svc.wechat.ask("o-old", "帮助") == texts.HELP  # asked once, not nagged

    accepted = await svc.wechat.ask("o-old", "同意")
    assert "2026-12-09" in accepted
    history = await ledger(svc, "o-old")
    assert [(r.action, r.version) for r in history] == [("accept", "2022-05-22"), ("accept", "2026-12-09")]
    assert history[0].text_sha256 == load_seed().text_sha256
    assert history[1].text_sha256 == version.text_sha256 != history[0].text_sha256

    notice = await svc.runtime.notices.get(notice_id)
    assert (notice.category, notice.important, notice.extra["version"], notice.total) == ("amendment", True, "2026-12-09", 1)
    assert await svc.runtime.deliveries.openids(notice_id, ("pending", "sending", "sent")) == ["o-old"]


async def test_a_scheduled_version_can_be_withdrawn_so_a_legal_change_applies_at_once(make_service, clock, emulator):
    from bot.amendment_rules import AmendmentRefused

    svc = await make_service(clock=clock)
    await svc.wechat.ask("o-wd", "同意")
    terms = svc.runtime.terms
    await terms.publish(amendment("2026-12-09"), reason="routine", effective_at=clock.now + dt.timedelta(days=7), by="t")
    legal = amendment("2026-11-26-legal", changes=("第1节第6款：依法调整",))
    with pytest.raises(AmendmentRefused) as refused:
        await terms.publish(legal, reason="legal", effective_at=None, by="t")
    assert "terms withdraw 2026-12-09" in refused.value.message
    # Withdrawn before it took effect: it never will, and users are told.
    _version, notice_id = await terms.withdraw("2026-12-09", reason="与即将发布的法律修订合并", by="t")
    assert (await terms.upcoming()) is None
    asked = await svc.wechat.ask("o-wd", "条款 2026-12-09")
    assert "已于 2026-12-01 10:00（北京时间）撤回，从未生效" in asked, asked  # no space after the bracket
    assert "原定 2026-12-08 10:00（北京时间）生效，已撤回" in asked and "将于" not in asked, asked  # its text, marked
    await terms.publish(legal, reason="legal", effective_at=None, by="t")
    assert (await terms.current()).version == "2026-11-26-legal"
    await svc.runtime.worker(concurrency=2).run_until_idle(30)
    told = await sent_to(emulator, "o-wd")
    assert any("已撤回" in t and "与即将发布的法律修订合并" in t for t in told)
    # The admin's reason is ended as a sentence before the hint on the next line.
    assert any("原因：与即将发布的法律修订合并。\n回复“条款”查看现行协议。" in t for t in told), told
    assert any("原定 2026-12-08 10:00（北京时间）生效" in t for t in told), told  # the time, not the day alone
    clock.advance(days=8)
    assert (await terms.current()).version == "2026-11-26-legal"
    # Its identifier stays taken, and a version in force cannot be withdrawn.
    with pytest.raises(AmendmentRefused):
        await terms.publish(amendment("2026-12-09"), reason="legal", effective_at=None, by="t")
    with pytest.raises(AmendmentRefused) as in_force:
        await terms.withdraw("2026-11-26-legal", reason="x", by="t")
    assert "已生效的版本不能撤回" in in_force.value.message
    progress = await svc.runtime.broadcasts.progress(notice_id)
    assert progress.notice.category == "amendment" and progress.notice.important


def _rewritten(version, section: int, clause: int, text: str):
    """``version`` with one clause's text replaced."""
    sections = list(version.sections)
    target = sections[section - 1]
    clauses = list(target.clauses)
    clauses[clause - 1] = text
    sections[section - 1] = dataclasses.replace(target, clauses=tuple(clauses))
    return dataclasses.replace(version, sections=tuple(sections))


async def test_a_version_whose_changes_a_later_one_carries_is_not_withdrawn_before_it(make_service, clock):
    # Withdrawn, its changes were announced as not taking effect, and took effect
    # with the later version drafted from it, whose summary said nothing of them.
    from bot.amendment_rules import AmendmentRefused

    svc = await make_service(clock=clock)
    terms = svc.runtime.terms
    v7 = amendment("2026-12-09")  # changes 1.6
    await terms.publish(v7, reason="routine", effective_at=clock.now + dt.timedelta(days=7), by="t")
    v8 = dataclasses.replace(_rewritten(v7, 2, 1, "联系人信息变更后应及时更新。"), version="2026-12-10",
                             changes=("第2节第1款：联系人信息应及时更新",))
    await terms.publish(v8, reason="routine", effective_at=clock.now + dt.timedelta(days=8), by="t")
    with pytest.raises(AmendmentRefused) as refused:
        await terms.withdraw("2026-12-09", reason="暂不修改", by="t")
    assert refused.value.code == "amendment_carried"
    assert "第1.6条" in refused.value.message and "terms withdraw 2026-12-10" in refused.value.message
    assert [v.version for v in await terms.pending()] == ["2026-12-09", "2026-12-10"]
    # Withdrawn in that order, both go.
    await terms.withdraw("2026-12-10", reason="暂不修改", by="t")
    await terms.withdraw("2026-12-09", reason="暂不修改", by="t")
    assert await terms.pending() == []


def test_a_later_version_that_names_the_change_or_lacks_it_lets_it_be_withdrawn():
    from bot.amendment_rules import check_withdrawal

    seed = load_seed()
    start = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)

    def published(draft, days: int):
        return draft.published("routine", start, start + dt.timedelta(days=days))

    v7 = published(amendment("v7"), 7)
    named = published(dataclasses.replace(_rewritten(amendment("v8"), 2, 1, "新"), changes=("1.6 简化", "2.1 新")), 8)
    fresh = published(dataclasses.replace(_rewritten(seed, 2, 1, "新"), version="v8b", changes=("2.1 新",)), 8)
    base = dataclasses.replace(seed, effective_at=start - dt.timedelta(days=300))
    check_withdrawal(v7, [base, v7, named])
    check_withdrawal(v7, [base, v7, fresh])


async def test_declining_while_a_new_version_waits_keeps_the_accepted_one(make_service, clock):
    # 不同意 was recorded as a refusal of the version the user had accepted: cut off at
    # once, their objection to the new version recorded nowhere.
    svc = await make_service(clock=clock)
    await svc.wechat.ask("o-obj", "同意")
    await svc.runtime.terms.publish(amendment("2026-12-09"), reason="routine",
                                    effective_at=clock.now + dt.timedelta(days=7), by="t")
    reply = await svc.wechat.ask("o-obj", "不同意")
    assert "继续有效" in reply and "2026-12-09" in reply and "撤回同意" in reply, reply
    assert [r.action for r in await ledger(svc, "o-obj")] == ["accept"]
    assert (await svc.runtime.consents.state("o-obj")).accepted
    status = await svc.wechat.ask("o-obj", "同意状态")
    assert "现行版本" in status and "即将生效" in status and "2026-12-09" in status
    # Once it is in force, 不同意 is recorded against it.
    clock.advance(days=7, seconds=1)
    await svc.runtime.terms.refresh()
    await svc.wechat.ask("o-obj", "条款")
    assert "已记录：您不同意" in await svc.wechat.ask("o-obj", "不同意")
    assert [(r.action, r.version) for r in await ledger(svc, "o-obj")] == [("accept", "2022-05-22"), ("decline", "2026-12-09")]


async def test_a_choice_naming_a_version_is_answered_as_to_that_version(make_service, clock):
    # 同意 2026-v5 went to the Q&A ("没有找到…最接近：协议前言").
    svc = await make_service(clock=clock)
    await svc.runtime.terms.publish(amendment("2026-12-09"), reason="routine",
                                    effective_at=clock.now + dt.timedelta(days=7), by="t")
    pending = await svc.wechat.ask("o-named", "同意 2026-12-09")
    assert "尚未生效" in pending and "现行版本是 2022-05-22" in pending, pending
    current = await svc.wechat.ask("o-named", "同意版本2022-05-22")
    assert "就是现行版本" in current and "单独回复“同意”" in current, current
    unknown = await svc.wechat.ask("o-named", "不同意 2019-v1")
    assert "没有版本为" in unknown and "单独回复“不同意”" in unknown, unknown
    assert await ledger(svc, "o-named") == []  # nothing recorded by any of them
    assert "已记录" in await svc.wechat.ask("o-named", "同意")


async def test_legal_amendment_applies_at_once(make_service, clock):
    svc = await make_service(clock=clock)
    await svc.wechat.ask("o-legal", "同意")
    version, notice_id = await svc.runtime.terms.publish(
        amendment("2026-12-01-legal"), reason="legal", effective_at=None, by="test")
    reply = await svc.wechat.ask("o-legal", "条款")
    assert reply.startswith("《微拓软件服务使用协议》已更新") and "版本 2026-12-01-legal" in reply
    # Its notice says it is in force, not that it will be; its title names the version (the console lists many).
    notice = await svc.runtime.notices.get(notice_id)
    assert notice.title == "《微拓软件服务使用协议》修改通知（版本 2026-12-01-legal）"
    assert "已于" in notice.body and "即时生效" in notice.body and "将于" not in notice.body
    assert "因法律法规要求" in notice.body  # the ground that lets it skip the week's notice


async def test_asking_again_lists_the_changes_of_every_version_since_the_one_accepted(make_service, clock):
    svc = await make_service(clock=clock)
    await svc.wechat.ask("o-two-legal", "同意")
    terms = svc.runtime.terms
    await terms.publish(amendment("2026-12-01-a", changes=("第1节第6款：依法调整",)), reason="legal", effective_at=None, by="t")
    clock.advance(minutes=1)
    await terms.publish(amendment("2026-12-01-b", changes=("第8节：依法补充实名要求",), long_section=True), reason="legal",
                        effective_at=None, by="t")
    reply = await svc.wechat.ask("o-two-legal", "我的账户")
    assert "第1节第6款：依法调整" in reply and "第8节：依法补充实名要求" in reply  # the first was left out
    assert "版本 2026-12-01-a（" in reply and "版本 2026-12-01-b（" in reply


def test_a_prompt_is_remembered_longer_than_a_version_may_be_published_ahead():
    # Remembered 30 days, a 同意 on day 46 to a welcome of day 1 was taken for a
    # version published that day to take effect on day 45, never shown.
    from bot.amendment_rules import MAX_AHEAD
    from storage.dialog_state import PROMPT_TTL

    assert PROMPT_TTL > MAX_AHEAD.total_seconds()


async def test_a_consent_after_declining_a_replaced_version_is_asked_again(make_service, clock):
    svc = await make_service(clock=clock)
    assert "版本 2022-05-22" in await svc.wechat.ask("o-decl", "不同意")
    await svc.runtime.terms.publish(amendment("2026-12-01-legal", changes=("第1节第6款：依法调整",)), reason="legal",
                                    effective_at=None, by="t")
    again = await svc.wechat.ask("o-decl", "同意")
    assert "针对版本 2022-05-22" in again and await svc.runtime.ledger.latest("o-decl") is not None
    assert (await svc.runtime.ledger.latest("o-decl")).action == "decline"


async def test_one_who_accepted_the_old_version_and_answers_a_notice_with_consent_gets_the_usual_prompt(make_service, clock):
    # Asked for A at the welcome, accepted A; B took effect; their first word is 同意:
    # they were not "asked for A", they accepted it. The re-consent prompt says so.
    svc = await make_service(clock=clock)
    await svc.wechat.post(event_xml("o-frank", "subscribe"))
    await svc.wechat.ask("o-frank", "同意")
    await svc.runtime.terms.publish(amendment("2026-12-01-legal", changes=("第1节第6款：依法调整",)), reason="legal",
                                    effective_at=None, by="t")
    reply = await svc.wechat.ask("o-frank", "同意")
    assert reply.startswith("《微拓软件服务使用协议》已更新") and "您此前同意的是版本 2022-05-22" in reply
    assert "同意请求是针对" not in reply
    assert (await svc.wechat.ask("o-frank", "同意")).startswith("已记录：您同意了")


async def test_a_first_consent_after_the_switch_shows_the_changes_once(make_service, clock):
    # 同意 as the first message after the new version took effect showed the
    # re-consent prompt, and the next message showed it again.
    svc = await make_service(clock=clock)
    await svc.wechat.post(event_xml("o-first", "subscribe"))  # the welcome asks about 2022-05-22
    await svc.wechat.ask("o-first", "同意")
    await svc.runtime.terms.publish(amendment("2026-12-09"), reason="routine",
                                    effective_at=clock.now + dt.timedelta(days=7), by="test")
    clock.advance(days=7, seconds=1)
    shown = await svc.wechat.ask("o-first", "同意")
    assert shown.startswith("《微拓软件服务使用协议》已更新") and "您此前同意的是版本 2022-05-22" in shown
    assert await svc.wechat.ask("o-first", "帮助") == texts.HELP
    assert (await svc.wechat.ask("o-first", "同意")).startswith("已记录：您同意了")


@pytest.mark.parametrize("choice, recorded, action", [("同意", "已记录：您同意了", "accept"),
                                                      ("不同意", "已记录：您不同意", "decline")])
async def test_a_choice_about_a_version_replaced_since_the_request_is_asked_again(make_service, clock, choice,
                                                                                     recorded, action):
    # Asked (at the follow) about the version then in force; a legal version
    # took effect before the reply: 同意 (and later 不同意, too) was recorded
    # against a version never shown.
    svc = await make_service(clock=clock)
    welcome = svc.wechat.reply(await svc.wechat.post(event_xml("o-late", "subscribe")))["Content"]
    assert "版本 2022-05-22" in welcome
    await svc.runtime.terms.publish(amendment("2026-12-01-legal", changes=("第1节第6款：依法调整",)), reason="legal",
                                    effective_at=None, by="t")
    first = await svc.wechat.ask("o-late", choice)
    assert "针对版本 2022-05-22" in first and "第1节第6款：依法调整" in first and "版本 2026-12-01-legal" in first
    assert f"“{choice}”尚未记录" in first
    assert await svc.runtime.ledger.history("o-late") == []
    second = await svc.wechat.ask("o-late", choice)
    assert second.startswith(recorded) and "版本 2026-12-01-legal" in second, second
    assert [(r.action, r.version) for r in await svc.runtime.ledger.history("o-late")] == [(action, "2026-12-01-legal")]


async def test_a_choice_whose_request_redis_forgot_is_not_taken_for_a_version_never_shown(make_service, clock):
    # Which version a user was asked about lives in Redis: with that key gone
    # (FLUSHALL, a Redis without persistence restarted), 同意 was recorded for
    # a version that took effect after the follow and was never shown.
    from storage.redis_store import key

    svc = await make_service(clock=clock)
    await svc.wechat.post(event_xml("o-forgot", "subscribe"))
    await svc.runtime.terms.publish(amendment("2026-12-01-legal", changes=("第1节第6款：依法调整",)), reason="legal",
                                    effective_at=None, by="t")
    await svc.runtime.redis.delete(key("prompted", "o-forgot"))
    shown = await svc.wechat.ask("o-forgot", "同意")
    assert "“同意”尚未记录" in shown and "版本 2026-12-01-legal" in shown, shown
    assert await svc.runtime.ledger.history("o-forgot") == []
    assert (await svc.wechat.ask("o-forgot", "同意")).startswith("已记录：您同意了")
    # One who followed after it took effect can have been shown no other.
    clock.advance(seconds=5)
    await svc.wechat.post(event_xml("o-since", "subscribe"))
    await svc.runtime.redis.delete(key("prompted", "o-since"))
    assert (await svc.wechat.ask("o-since", "同意")).startswith("已记录：您同意了")
    assert [r.version for r in await svc.runtime.ledger.history("o-since")] == ["2026-12-01-legal"]


async def test_a_refusal_by_one_who_accepted_the_version_in_force_elsewhere_is_recorded(make_service, clock):
    # Asked about 2022-05-22 at the follow; accepted the new version in the mini-program;
    # 不同意 in chat was answered as if never shown it ("请回复同意接受…").
    from bot.consent import Origin

    svc = await make_service(clock=clock)
    await svc.wechat.post(event_xml("o-both-ways", "subscribe"))
    await svc.runtime.terms.publish(amendment("2026-12-01-legal", changes=("第1节第6款：依法调整",)), reason="legal",
                                    effective_at=None, by="t")
    await svc.runtime.consents.accept("o-both-ways", Origin(channel="miniprogram", message_id="tap-1"))
    reply = await svc.wechat.ask("o-both-ways", "不同意")
    assert reply.startswith("已记录：您不同意") and "版本 2026-12-01-legal" in reply, reply
    assert [r.action for r in await svc.runtime.ledger.history("o-both-ways")] == ["accept", "decline"]


async def test_the_first_question_after_a_version_takes_effect_quotes_the_new_text(make_service, clock):
    # The index was rebuilt in the background: the next answers quoted the old 4.1.
    svc = await make_service(clock=clock)
    await svc.wechat.ask("o-new-41", "同意")
    assert "属于您的内容依然归您所有" in await svc.wechat.ask("o-new-41", "我上传的图片版权归谁？")
    seed = load_seed()
    content = seed.sections[3]
    new_41 = content.clauses[0].replace("属于您的内容依然归您所有", "属于您的内容（包括您上传的图片）依然归您所有")
    assert new_41 != content.clauses[0]
    sections = seed.sections[:3] + (dataclasses.replace(content, clauses=(new_41,) + content.clauses[1:]),) + seed.sections[4:]
    await svc.runtime.terms.publish(
        dataclasses.replace(seed, version="2026-12-01-41", changes=("第4.1条：写明包括图片",), sections=sections),
        reason="legal", effective_at=None, by="t")
    await svc.wechat.ask("o-new-41", "同意")
    assert "包括您上传的图片" in await svc.wechat.ask("o-new-41", "我上传的图片版权归谁？")


async def test_who_accepts_or_follows_during_a_notice_period_is_told_of_the_coming_version(make_service, clock):
    # The amendment notice went to those who had accepted before it was published.
    svc = await make_service(clock=clock)
    await svc.runtime.terms.publish(amendment("2026-12-09", changes=("第1节第6款：简化表述",)), reason="routine",
                                    effective_at=clock.now + dt.timedelta(days=8), by="t")
    welcome = svc.wechat.reply(await svc.wechat.post(event_xml("o-new", "subscribe")))["Content"]
    assert "【即将生效】版本 2026-12-09" in welcome and "第1节第6款：简化表述" in welcome
    accepted = await svc.wechat.ask("o-new", "同意")
    assert accepted.startswith("已记录：您同意了") and "版本 2022-05-22" in accepted
    assert "【即将生效】版本 2026-12-09" in accepted and "届时我们会请您重新确认" in accepted


async def test_only_one_who_accepted_the_version_in_force_is_told_they_will_be_asked_again(make_service, clock):
    # Everyone was told 届时我们会请您重新确认: one who never accepted, or withdrew, is asked
    # nothing again; their 同意 after the switch is to the new version.
    svc = await make_service(clock=clock)
    await svc.runtime.terms.publish(amendment("2026-12-09", changes=("第1节第6款：简化表述",)), reason="routine",
                                    effective_at=clock.now + dt.timedelta(days=8), by="t")
    again, new = "届时我们会请您重新确认", "生效后，同意即是同意新版本"
    welcome = svc.wechat.reply(await svc.wechat.post(event_xml("o-never", "subscribe")))["Content"]
    for text in (welcome, await svc.wechat.ask("o-never", "条款"), await svc.wechat.ask("o-never", "协议最近改了什么")):
        assert "【即将生效】版本 2026-12-09" in text and again not in text and new in text, text
    await svc.wechat.ask("o-never", "同意")
    for text in (await svc.wechat.ask("o-never", "条款"), await svc.wechat.ask("o-never", "协议最近改了什么"),
                 await svc.wechat.ask("o-never", "同意状态")):
        assert again in text and new not in text, text
    await svc.wechat.ask("o-never", "撤回同意")
    withdrawn = await svc.wechat.ask("o-never", "条款")
    assert again not in withdrawn and new in withdrawn, withdrawn
    # Once that version is in force, 同意 is to it (shown its changes first: the last prompt was for the old one).
    clock.advance(days=8, seconds=1)
    assert "版本 2026-12-09" in await svc.wechat.ask("o-never", "同意")
    assert "已记录：您同意了" in await svc.wechat.ask("o-never", "同意")
    assert [(r.action, r.version) for r in await ledger(svc, "o-never")][-1] == ("accept", "2026-12-09")


# -- the user's own data -------------------------------------------------------------------------


async def test_export_link_works_once(service, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="tornado.access")
    await service.wechat.post(event_xml("o-me", "subscribe"))
    await service.wechat.ask("o-me", "同意")
    reply = await service.wechat.ask("o-me", "导出我的数据")
    assert "同意记录 1 条" in reply and "24 小时" in reply
    url = reply.split()[-1]
    assert url.startswith(service.runtime.config.base_url + "/export/")
    url = service.url + url[len(service.runtime.config.base_url):]
    # Redis holds the token's hash only: a copy of its data cannot be used as a link.
    token = url.rsplit("/", 1)[-1]
    stored = [k async for k in service.runtime.redis.scan_iter(match="wb:export:*")]
    assert len(stored) == 1 and token not in stored[0]

    response = await AsyncHTTPClient().fetch(url, raise_error=False)
    assert response.code == 200
    document = json.loads(response.body)
    assert document["openid"] == "o-me"
    assert document["merchant"] is None
    assert document["preferences"] == {c: "on" for c in ("service", "security", "admin", "amendment", "other")}
    assert document["deliveries"] == []
    assert document["follower"]["subscribed"] is True
    [consent] = document["consents"]
    assert consent["version"] == "2022-05-22" and consent["action"] == "accept"
    assert consent["channel"] == "official_account" and consent["text_sha256"] == load_seed().text_sha256
    assert dt.datetime.fromisoformat(consent["at"]).tzinfo is not None

    again = await AsyncHTTPClient().fetch(url, raise_error=False)
    assert again.code == 404
    assert json.loads(again.body)["error"]["code"] == "link_expired"
    # The token is the user's data for a day: kept out of the access log (a host
    # that cannot open it logged its 404 with the token, still good elsewhere).
    logged = [r.getMessage() for r in caplog.records if r.name == "tornado.access" and "/export/" in r.getMessage()]
    assert len(logged) == 2 and not any(token in line for line in logged), logged


async def test_a_question_about_something_the_bot_does_says_which_reply_does_it(service):
    reply = await service.wechat.ask("o-how", "我的数据可以导出吗")
    assert "根据《" in reply and reply.endswith(texts.command_hint("导出"))
    assert "回复“通知设置”" in await service.wechat.ask("o-how", "怎么退订你们的通知")
    assert texts.command_hint("我上传的图片版权归谁") is None


async def test_export_link_opened_in_wechats_browser_shows_the_data_and_carries_the_json(service):
    # WeChat's in-app browser does not download attachments, and the link works once.
    import re
    from urllib.parse import unquote

    await service.wechat.post(event_xml("o-page", "subscribe"))
    await service.wechat.ask("o-page", "同意")
    url = (await service.wechat.ask("o-page", "导出我的数据")).split()[-1]
    url = service.url + url[len(service.runtime.config.base_url):]
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}

    page = await AsyncHTTPClient().fetch(url, headers=browser, raise_error=False)
    assert page.code == 200 and page.headers["Content-Type"].startswith("text/html")
    html = page.body.decode()
    for shown in ("您在微拓保存的数据", "同意记录", "2022-05-22", "北京时间", "协议版本", "同意", "下载 JSON 文件", "现已失效"):
        assert shown in html, shown
    href = re.search(r'href="data:application/json;charset=utf-8,([^"]+)"', html).group(1)
    carried = json.loads(unquote(href.replace("&amp;", "&")))
    assert carried["openid"] == "o-page" and carried["consents"][0]["action"] == "accept"

    gone = await AsyncHTTPClient().fetch(url, headers=browser, raise_error=False)
    assert gone.code == 404 and "重新发送“导出我的数据”" in gone.body.decode()


async def test_an_export_link_opened_on_a_host_with_another_secret_still_works_where_it_was_made(service):
    # Hosts without a shared COOKIE_SECRET each seal with their own: a link
    # opened on the wrong one was used up there, and lost on the right one too.
    import secrets

    from storage.export_links import ExportLinks

    here = ExportLinks(service.runtime.redis, "a" * 40)
    there = ExportLinks(service.runtime.redis, "b" * 40)
    token = secrets.token_urlsafe(24)
    await here.create(token, "o-hosts", {"openid": "o-hosts"}, ttl=60)
    assert await there.take(token) is None
    assert await here.take(token) == {"openid": "o-hosts"}
    assert await here.take(token) is None  # once


async def test_unknown_export_link_is_404(service):
    response = await AsyncHTTPClient().fetch(service.url + "/export/" + "x" * 32, raise_error=False)
    assert response.code == 404 and "error" in json.loads(response.body)


async def test_consent_with_mongodb_down_says_not_saved(make_service, backing, monkeypatch):
    import time

    from storage.embedded import free_port

    monkeypatch.setattr(backing, "mongodb_uri", f"mongodb://127.0.0.1:{free_port()}/")
    svc = await make_service()
    started = time.monotonic()
    reply = await svc.wechat.ask("o-down", "同意")
    assert reply == texts.STORAGE_DOWN
    assert time.monotonic() - started < 4.5  # an answer, not the customer-service fallback
    # Reading the agreement still works from what the process knows.
    assert "使用微拓的服务" in await svc.wechat.ask("o-down", "条款")
    welcome = svc.wechat.reply(await svc.wechat.post(event_xml("o-down", "subscribe")))["Content"]
    assert welcome.startswith("欢迎关注微拓")


async def test_the_first_message_after_a_quiet_spell_sees_a_version_published_elsewhere(service, monkeypatch):
    # The cache may answer while it reloads only if it is recent: after a
    # quiet spell the first message waits for the read, and so is not told
    # about a version that another process replaced long ago.
    from bot.terms import STALE_SECONDS, Terms

    runtime = service.runtime
    assert "2022-05-22" in await service.wechat.ask("o-quiet", "条款")  # the cache is warm
    other = Terms(runtime.versions, runtime.broadcasts, runtime.clock, locks=runtime.locks)
    await other.publish(amendment("2026-11-20"), reason="legal", effective_at=None, by="cli")
    later = runtime.terms.monotonic() + STALE_SECONDS + 1
    monkeypatch.setattr(runtime.terms, "monotonic", lambda: later)  # the quiet spell, on the cache's clock only
    assert "2026-11-20" in await service.wechat.ask("o-quiet", "条款")


async def test_an_upcoming_version_shows_its_time_unless_it_is_midnight(service):
    from bot.agreement import CHINA

    runtime = service.runtime
    day = (runtime.clock().astimezone(CHINA) + dt.timedelta(days=9)).date()
    at = dt.datetime.combine(day, dt.time(9, 30), CHINA)
    await runtime.terms.publish(amendment("2027-09-09"), reason="routine", effective_at=at, by="test")
    # A time of day says it is Beijing time, as the CLI and the console do; a day alone needs nothing.
    assert f"将于 {day:%Y-%m-%d} 09:30（北京时间）生效" in await service.wechat.ask("o-when", "条款")
    assert f"（将于 {day:%Y-%m-%d} 09:30（北京时间）生效）" in await service.wechat.ask("o-when", "条款 2027-09-09")
    await runtime.terms.withdraw("2027-09-09", reason="改期", by="test")
    midnight = dt.datetime.combine(day, dt.time(0, 0), CHINA)
    await runtime.terms.publish(amendment("2027-09-10"), reason="routine", effective_at=midnight, by="test")
    assert f"将于 {day:%Y-%m-%d} 生效" in await service.wechat.ask("o-when", "条款")


@pytest.mark.parametrize("command, needle", [
    ("条款 4.1", "4.1 "),
    ("条款4.2", "4.2 "),
    ("条款 第四节", "第4节"),
    ("条款 四", "第4节"),
    ("条款 4.99", "没有第 4.99 款"),
    ("条款 -1", "没有第 -1 节"),
    ("条款 99999999999999999999", "请回复“条款 1”到“条款 7”"),
    ("条款 99999999999999999999", "没有第 999999999999… 节"),  # cut, and seen to be (it read as 12 nines)
    ("条款 " + "9" * 5000, "请回复“条款 1”到“条款 7”"),
    ("条款 第0节", "没有第 0 节"),
    ("条款 9.1", "没有第 9.1 款。当前版本共 7 节"),  # said 没有第 9.1 节
    ("条款 2022-05-22 4.1", "4.1 "),
    # As phones type them.
    ("条款 4.2。", "4.2 "),
    ("条款：4", "第4节"),
    ("条款，2", "第2节"),  # a phone keyboard's comma (it went to the Q&A: "没有找到")
    ("条款 第4.2款", "4.2 "),
    ("条款 4,2", "4.2 "),
    ("条款 4、2", "4.2 "),
    ("条款 2022-05-22", "1. "),
    ("条款 v2", "没有版本为 v2 的协议"),
])
async def test_terms_with_a_clause_or_an_odd_number_is_a_command_not_a_question(service, command, needle):
    reply = await service.wechat.ask("o-place", command)
    assert needle in reply, reply
    assert "最接近的是" not in reply and "没有找到" not in reply


@pytest.mark.parametrize("question", ["条款是什么意思", "协议pdf", "条款 GDPR", "协议 QQ"])
async def test_a_question_starting_with_terms_is_still_a_question(service, question):
    reply = await service.wechat.ask("o-place", question)
    assert "没有第" not in reply and "没有版本为" not in reply


async def test_an_unknown_menu_item_gets_the_help_not_silence(service):
    reply = service.wechat.reply(await service.wechat.post(event_xml("o-menu", "CLICK", "NO_SUCH_KEY")))
    assert reply is not None and reply["Content"].startswith(texts.UNKNOWN_MENU_ITEM) and texts.HELP in reply["Content"]


async def test_hints_under_another_versions_text_lead_back_to_that_version(make_service, clock):
    # Under 条款 <version> 3.1 the hint said 回复“条款 3”, which shows the version
    # in force: another text.
    svc = await make_service(clock=clock)
    await svc.runtime.terms.publish(
        amendment("2026-12-09"), reason="routine", effective_at=clock.now + dt.timedelta(days=7), by="test"
    )
    clause = await svc.wechat.ask("o-cite", "条款 2026-12-09 3.1")
    assert "回复“条款 2026-12-09 3”阅读整节" in clause
    assert "条款 2026-12-09 3.1”到“条款 2026-12-09 3." in await svc.wechat.ask("o-cite", "条款 2026-12-09 3.9")
    assert "版本 2026-12-09 共 7 节" in await svc.wechat.ask("o-cite", "条款 2026-12-09 9")
    overview = await svc.wechat.ask("o-cite", "条款 2026-12-09")
    assert "版本 2026-12-09（将于" in overview and "回复“条款 2026-12-09 N”" in overview
    assert "回复“条款 3”阅读整节" in await svc.wechat.ask("o-cite", "条款 3.1")  # the version in force: as before


async def test_terms_shows_every_upcoming_version(make_service, clock, emulator):
    svc = await make_service(clock=clock)
    await svc.runtime.terms.publish(
        amendment("2026-12-09"), reason="routine", effective_at=clock.now + dt.timedelta(days=7), by="test"
    )
    await svc.runtime.terms.publish(
        amendment("2026-12-11", changes=("新增附加说明一节",), long_section=True), reason="routine",
        effective_at=clock.now + dt.timedelta(days=9), by="test",
    )
    # Over 2048 bytes with both: the rest follows by customer service.
    passive = await svc.wechat.ask("o-two", "条款")
    overview = "\n".join(p.removesuffix(texts.CONTINUED) for p in [passive, *await sent_to(emulator, "o-two")])
    assert "版本 2026-12-09 将于" in overview and "第1节第6款：简化表述" in overview
    assert "版本 2026-12-11 将于" in overview and "新增附加说明一节" in overview  # the later one was hidden


def test_every_kind_of_logged_question_has_a_label_on_the_export_page():
    # form_help was shown to users as "form_help".
    from bot.answers import FORM_HELP
    from bot.qa.engine import ABSTAIN, ANSWER, SMALLTALK
    from handlers.export import VALUES

    assert {ANSWER, ABSTAIN, SMALLTALK, FORM_HELP} <= set(VALUES["kind"])


@pytest.mark.parametrize("reason, said", [("发现措辞需要调整", "发现措辞需要调整。"), ("已合并。", "已合并。"),
                                          ("为什么要撤回？", "为什么要撤回？"), ("见“公告。”", "见“公告。”"), ("（见公告）", "（见公告）。")])
def test_a_withdrawal_reason_is_ended_once(reason, said):
    version = dataclasses.replace(load_seed(), version="2026-12-09")
    assert f"原因：{said}\n" in texts.amendment_withdrawn(version, reason)
