"""The agreement as data and the amendment rules (no I/O)."""

from __future__ import annotations

import dataclasses
import asyncio
import datetime as dt
from pathlib import Path

import pytest

from bot.agreement import SECTION_SUMMARY_MAX, InvalidAgreement, Section, load_seed, parse_toml
from bot.amendment_rules import (
    AmendmentRefused, check_publication, earliest_effective, earliest_shown, parse_effective_at,
)

# The published text as received (a copy of shared/seeds/000_c916f0118e10f9b8.txt).
SEED_FILE = Path(__file__).resolve().parents[1] / "data" / "agreement" / "2022-05-22.source.txt"
TITLES = ["使用微拓的服务", "微拓帐户", "隐私与著作权保护", "您在我们服务中发布的内容", "修改服务", "服务的商业使用", "关于本协议"]
UTC = dt.timezone.utc


def amended(version: str = "2026-12-09", **changes) -> object:
    seed = load_seed()
    first = seed.sections[0]
    section = dataclasses.replace(first, clauses=first.clauses[:-1] + ("我们的部分服务可在移动设备上使用。",))
    values = dict(version=version, changes=("第1节第6款：简化表述",), sections=(section,) + seed.sections[1:])
    values.update(changes)
    return dataclasses.replace(seed, **values)


def test_seed_is_the_published_text_exactly():
    seed = load_seed()
    assert seed.version == "2022-05-22"
    assert [s.title for s in seed.sections] == TITLES
    paragraphs = [p.strip() for p in SEED_FILE.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    assert paragraphs[0] == "更新于 : 2022-05-22"
    start = paragraphs.index("微拓软件服务使用协议")
    end = paragraphs.index("有关如何与微拓联系的信息,请访问我们的联系信息页")
    assert seed.canonical_text() == "\n\n".join(paragraphs[start : end + 1])
    assert seed.sections[3].clauses[0].startswith("我们的某些服务允许您上传")
    assert seed.sections[1].clause_number(2) == "2.3"
    assert len(seed.text_sha256) == 64


def test_summaries_are_short_and_plain():
    seed = load_seed()
    assert 3 <= len(seed.summary) <= 5
    for section in seed.sections:
        assert 0 < len(section.summary) <= SECTION_SUMMARY_MAX


def test_file_format_round_trips():
    seed = load_seed()
    again = parse_toml(seed.to_toml())
    assert again.canonical_text() == seed.canonical_text()
    assert again.summary == seed.summary
    assert [s.summary for s in again.sections] == [s.summary for s in seed.sections]


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda t: t.replace('version = "2022-05-22"', 'version = "bad version!"'), "version"),
        (lambda t: t.replace('version = "2022-05-22"', 'version = "4.1"'), "节号或条款号"),  # 条款 4.1 is a clause
        (lambda t: t.replace('version = "2022-05-22"', 'version = "3"'), "节号或条款号"),
        (lambda t: t.replace("[[sections]]", "[[nothing]]"), "sections"),
        (lambda t: t + 'extra = "x"\n', "未知的字段"),
        (lambda t: t.replace('summary = "请遵守', 'summary = "' + "长" * 81 + '请遵守'), "80"),
        (lambda t: "not = [toml", "TOML"),
    ],
)
def test_bad_files_are_refused_with_reasons(mutate, needle):
    with pytest.raises(InvalidAgreement) as info:
        parse_toml(mutate(load_seed().to_toml()))
    assert needle in info.value.message


# -- the amendment rules ---------------------------------------------------------------

NOW = dt.datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def check(reason: str, effective_at: dt.datetime, draft=None, published=None) -> None:
    check_publication(
        draft or amended(),
        reason=reason,
        effective_at=effective_at,
        published_at=NOW,
        published=[load_seed()] if published is None else published,
    )


def test_routine_needs_seven_days():
    check("routine", NOW + dt.timedelta(days=7))
    with pytest.raises(AmendmentRefused) as info:
        check("routine", NOW + dt.timedelta(days=7) - dt.timedelta(seconds=1))
    assert info.value.rule == "notice_period"
    assert "7 天" in info.value.message and "2026-12-08 10:00" in info.value.message


def test_the_earliest_time_shown_to_admins_is_a_whole_minute_they_can_type():
    # Published at 10:00:37 (Beijing): "最早 …10:01" is shown, and 10:01 is accepted
    # (the seconds were cut, so the time shown was refused when typed).
    published = NOW + dt.timedelta(seconds=37)
    shown = earliest_shown("routine", published)
    assert shown == NOW + dt.timedelta(days=7, minutes=1)
    check_publication(amended(), reason="routine", effective_at=shown, published_at=published,
                      published=[load_seed()])
    assert earliest_shown("routine", NOW) == NOW + dt.timedelta(days=7)  # already whole
    # The rule itself is the week to the second, not to the minute shown:
    # a second after the week is allowed, a second before is not.
    week = earliest_effective("routine", published)
    assert week == published + dt.timedelta(days=7)
    check_publication(amended(), reason="routine", effective_at=week + dt.timedelta(seconds=1),
                      published_at=published, published=[load_seed()])
    with pytest.raises(AmendmentRefused) as info:
        check_publication(amended(), reason="routine", effective_at=week - dt.timedelta(seconds=1),
                          published_at=published, published=[load_seed()])
    assert info.value.rule == "notice_period" and "10:01" in info.value.message


def test_a_version_id_without_a_digit_is_refused():
    # Chat reads 条款 v-b as a question: such a version could be published but never opened.
    from bot.agreement import InvalidAgreement, parse_toml

    text = load_seed().to_toml().replace('version = "2022-05-22"', 'version = "v-b"', 1)
    with pytest.raises(InvalidAgreement) as info:
        parse_toml(text)
    assert "需要包含数字" in info.value.message


def test_a_version_id_ending_in_a_line_break_is_refused():
    # The pattern's "$" matched before a final newline: "2026-12-01\n" was a
    # version no one could name in chat or the API.
    from bot.agreement import InvalidAgreement, parse_toml

    text = load_seed().to_toml().replace('version = "2022-05-22"', 'version = "2026-12-01\\n"', 1)
    with pytest.raises(InvalidAgreement) as info:
        parse_toml(text)
    assert "version 只能包含字母" in info.value.message


def test_a_version_id_that_differs_only_in_case_is_refused():
    # Chat reads 条款 2026-12-V4 without case: two such ids could not be told
    # apart, and withdrawing one withdrew the other.
    published = [load_seed(), amended("2026-12-v4")]
    with pytest.raises(AmendmentRefused) as info:
        check("routine", NOW + dt.timedelta(days=8), draft=amended("2026-12-V4"), published=published)
    assert info.value.rule == "immutable" and "大小写" in info.value.message and "2026-12-v4" in info.value.message
    with pytest.raises(AmendmentRefused) as info:  # a withdrawn id is taken too
        check_publication(amended("2026-12-W1"), reason="routine", effective_at=NOW + dt.timedelta(days=8),
                          published_at=NOW, published=[load_seed()], withdrawn={"2026-12-w1"})
    assert "大小写" in info.value.message


def test_a_version_may_not_take_effect_more_than_a_year_ahead():
    check("routine", NOW + dt.timedelta(days=366))
    with pytest.raises(AmendmentRefused) as info:
        check("routine", NOW + dt.timedelta(days=367))
    assert info.value.rule == "too_far" and "366 天内" in info.value.message


@pytest.mark.parametrize("reason", ["new_feature", "legal"])
def test_new_feature_and_legal_may_apply_at_once(reason):
    check(reason, NOW)


@pytest.mark.parametrize("reason", ["routine", "new_feature", "legal"])
def test_nothing_is_retroactive(reason):
    with pytest.raises(AmendmentRefused) as info:
        check(reason, NOW - dt.timedelta(minutes=1))
    assert info.value.rule == "retroactive"
    assert "追溯" in info.value.message


def test_a_time_earlier_within_the_same_minute_is_shown_to_the_second():
    # "生效时间 05:32 早于发布时间 05:32" said nothing: the seconds tell them apart.
    published = NOW + dt.timedelta(seconds=26)
    with pytest.raises(AmendmentRefused) as info:
        check_publication(amended(), reason="legal", effective_at=NOW, published_at=published, published=[load_seed()])
    assert "10:00:00（北京时间）早于发布时间 2026-12-01 10:00:26" in info.value.message and "now" in info.value.message


def test_published_versions_are_immutable():
    with pytest.raises(AmendmentRefused) as info:
        check("legal", NOW, draft=amended(version="2022-05-22"))
    assert info.value.rule == "immutable"


def test_versions_take_effect_in_order():
    later = amended(version="2026-12-20").published("routine", NOW, NOW + dt.timedelta(days=19))
    with pytest.raises(AmendmentRefused) as info:
        check("routine", NOW + dt.timedelta(days=8), published=[load_seed(), later])
    assert info.value.rule == "order"


def test_amendments_need_a_change_summary_and_a_change():
    with pytest.raises(AmendmentRefused) as info:
        check("legal", NOW, draft=amended(changes=()))
    assert info.value.rule == "changes"
    same = dataclasses.replace(load_seed(), version="2026-12-09", changes=("无",))
    with pytest.raises(AmendmentRefused) as info:
        check("legal", NOW, draft=same)
    assert info.value.rule == "unchanged"


def test_a_change_summary_copied_from_the_latest_version_is_refused():
    # A draft starts as a copy of the latest version; left as it was, its
    # changes told every user of the previous amendment's changes.
    first = amended(version="2026-12-09").published("legal", NOW, NOW)
    second = dataclasses.replace(amended(version="2026-12-20"), sections=load_seed().sections[:1] + first.sections[1:])
    with pytest.raises(AmendmentRefused) as info:
        check("legal", NOW + dt.timedelta(hours=1), draft=second, published=[load_seed(), first])
    assert info.value.rule == "changes" and "2026-12-09" in info.value.message and "相同" in info.value.message
    check("legal", NOW + dt.timedelta(hours=1), draft=dataclasses.replace(second, changes=("第1节第6款：恢复原表述",)),
          published=[load_seed(), first])


def test_a_draft_made_from_an_older_version_is_refused_unless_it_names_what_it_undoes():
    # Drafted from the seed after 2026-12-09 changed 1.6, a version editing 2.3
    # published the old 1.6 again, while users were told only of 2.3.
    seed = load_seed()
    first = amended(version="2026-12-09").published("legal", NOW, NOW)
    account = seed.sections[1]
    sections = seed.sections[:1] + (dataclasses.replace(account, clauses=account.clauses[:2] + ("请妥善保管登录码和密码。",)),) + seed.sections[2:]
    stale = dataclasses.replace(seed, version="2026-12-20", changes=("第2.3条：文字调整",), sections=sections)
    later = NOW + dt.timedelta(hours=1)
    with pytest.raises(AmendmentRefused) as info:
        check("legal", later, draft=stale, published=[seed, first])
    message = info.value.message
    assert info.value.rule == "reverts" and info.value.code == "amendment_reverts"
    assert "第1.6条" in message and "2.3" not in message and "2022-05-22" in message and "terms show 2026-12-09" in message
    # Undone on purpose, and said so: published.
    check("legal", later, draft=dataclasses.replace(stale, changes=("第2.3条：文字调整", "第1.6条：恢复原表述")),
          published=[seed, first])
    # Made from the latest version: its own edit of 1.6 again is no undoing.
    current = first.sections[0]
    again = dataclasses.replace(first, version="2026-12-20", changes=("第1.6条：再次调整",), sections=(
        dataclasses.replace(current, clauses=current.clauses[:-1] + ("部分服务可在手机上使用，请注意交通安全。",)),) + first.sections[1:])
    check("legal", later, draft=again, published=[seed, first])


def test_a_draft_between_two_published_versions_names_every_change_it_undoes():
    # Drafted from a withdrawn version (the seed's 1.1 changed, as the next
    # published version then did with 1.6 too), only what the latest changed
    # was counted as undone: 1.6 went back to the seed's text unsaid.
    seed = load_seed()
    first = seed.sections[0]

    def with_clauses(base, version, changes, **clauses):
        texts = list(first.clauses)
        for number, text in clauses.items():
            texts[int(number[1:]) - 1] = text
        return dataclasses.replace(base, version=version, changes=changes,
                                   sections=(dataclasses.replace(first, clauses=tuple(texts)),) + base.sections[1:])

    second = with_clauses(seed, "2026-12-09", ("第1.1条、第1.6条：调整",), c1="新的第1.1条。", c6="新的第1.6条。"
                          ).published("legal", NOW, NOW)
    six = second.sections[5]
    third = dataclasses.replace(second, version="2026-12-10", changes=("第6.1条：调整",), sections=(
        second.sections[:5] + (dataclasses.replace(six, clauses=("新的第6.1条。",) + six.clauses[1:]),) + second.sections[6:])
    ).published("legal", NOW + dt.timedelta(minutes=1), NOW + dt.timedelta(minutes=1))
    stale = with_clauses(seed, "2026-12-20", ("第6.1条：恢复原文",), c1="新的第1.1条。")
    with pytest.raises(AmendmentRefused) as info:
        check("legal", NOW + dt.timedelta(hours=1), draft=stale, published=[seed, second, third])
    assert info.value.rule == "reverts" and "第1.6条" in info.value.message, info.value.message
    check("legal", NOW + dt.timedelta(hours=1), draft=dataclasses.replace(stale, changes=("第6.1条、第1.6条：恢复原文",)),
          published=[seed, second, third])


def test_rewording_what_the_latest_version_added_is_no_undoing():
    # Closeness by text sets took a draft from v2 that reworded v2's new clause 6.2
    # for one closer to the seed (which has no 6.2), and refused it.
    seed = load_seed()
    six = seed.sections[5]
    added = dataclasses.replace(seed, version="2026-12-09", changes=("第6节：新增第2款",), sections=seed.sections[:5] + (
        dataclasses.replace(six, clauses=six.clauses + ("商家应妥善保存交易记录。",)),) + seed.sections[6:]).published(
        "legal", NOW, NOW)
    reworded = dataclasses.replace(added, version="2026-12-20", changes=("第6节新增的条款：措辞调整",), sections=(
        added.sections[:5] + (dataclasses.replace(added.sections[5], clauses=six.clauses + ("商家应妥善保存交易记录三年。",)),)
        + added.sections[6:]))
    later = NOW + dt.timedelta(hours=1)
    check("legal", later, draft=reworded, published=[seed, added])
    # A draft from the seed undoes 6.2: named by its section, that is said.
    stale = dataclasses.replace(seed, version="2026-12-20", changes=("第1节第6款：简化表述",),
                                sections=amended().sections)
    with pytest.raises(AmendmentRefused) as info:
        check("legal", later, draft=stale, published=[seed, added])
    assert "第6.2条" in info.value.message and "撤销版本 2026-12-09 的修改" in info.value.message
    check("legal", later, draft=dataclasses.replace(stale, changes=("第1节第6款：简化表述", "删除第6节新增的条款")),
          published=[seed, added])


def test_unknown_reason_is_refused():
    with pytest.raises(AmendmentRefused) as info:
        check("because", NOW + dt.timedelta(days=30))
    assert info.value.rule == "reason"


def test_effective_at_formats():
    assert parse_effective_at("now") is None
    assert parse_effective_at("2026-12-08") == dt.datetime(2026, 12, 7, 16, 0, tzinfo=UTC)
    assert parse_effective_at("2026-12-08T09:30:00Z") == dt.datetime(2026, 12, 8, 9, 30, tzinfo=UTC)
    assert parse_effective_at("2026-12-08T09:30:00+08:00") == dt.datetime(2026, 12, 8, 1, 30, tzinfo=UTC)
    with pytest.raises(AmendmentRefused) as info:
        parse_effective_at("next tuesday")
    assert info.value.rule == "format"
    for edge in ("9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+08:00"):  # overflowed: a traceback
        with pytest.raises(AmendmentRefused) as info:
            parse_effective_at(edge)
        assert info.value.rule == "format" and "超出范围" in info.value.message


def test_section_numbers_follow_file_order():
    section = Section(3, "t", "s", ("a", "b"))
    assert section.full_text() == "第3节 t\n\n3.1 a\n\n3.2 b"


async def test_two_publications_at_once_are_checked_one_after_the_other(service):
    # Each checks the order rule against the versions published: two admins
    # publishing at the same moment had both versions stored for one date.
    from bot.amendment_rules import AmendmentRefused

    runtime = service.runtime
    when = runtime.clock() + dt.timedelta(days=10)
    results = await asyncio.gather(
        runtime.terms.publish(amended("2026-12-20a"), reason="routine", effective_at=when, by="olga"),
        runtime.terms.publish(amended("2026-12-20b"), reason="routine", effective_at=when, by="ed"),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, AmendmentRefused)]
    assert len(refused) == 1, results
    assert [v.version for v in await runtime.terms.versions()][-1] in ("2026-12-20a", "2026-12-20b")
    assert len(await runtime.terms.versions()) == 2


async def test_publishing_with_redis_down_says_so_and_stores_nothing(service):
    # Publication holds a Redis lock; with Redis down the admin hears that,
    # not "another operation is in progress", and nothing is published.
    from bot.terms import Terms
    from storage import redis_store
    from storage.embedded import free_port
    from storage.locks import UserLocks

    runtime = service.runtime
    dead = redis_store.connect(f"redis://127.0.0.1:{free_port()}/0")
    try:
        terms = Terms(runtime.versions, runtime.broadcasts, runtime.clock, locks=UserLocks(dead))
        with pytest.raises(redis_store.RedisUnavailable):
            await terms.publish(amended("2026-12-21"), reason="routine",
                                effective_at=runtime.clock() + dt.timedelta(days=10), by="olga")
    finally:
        await dead.aclose()
    assert [v.version for v in await runtime.terms.versions()] == ["2022-05-22"]


async def test_a_publication_whose_notice_fails_is_still_in_the_audit_log(service):
    # The version is stored before its notice is queued; when queueing fails
    # (Redis gone in between), the publication must still be in the audit log.
    from bot.consent import Origin
    from bot.notices import Broadcasts
    from bot.terms import Terms
    from storage import redis_store
    from storage.delivery_journal import DeliveryJournal
    from storage.embedded import free_port
    from storage.work_queue import WorkQueue

    runtime = service.runtime
    await runtime.consents.accept("o-told", Origin("official_account", "m1"))
    dead = redis_store.connect(f"redis://127.0.0.1:{free_port()}/0")
    try:
        broadcasts = Broadcasts(runtime.notices, runtime.deliveries, WorkQueue(dead), runtime.followers,
                                runtime.merchants.repo, runtime.ledger, DeliveryJournal(dead), runtime.clock)
        terms = Terms(runtime.versions, broadcasts, runtime.clock, locks=runtime.locks, audit=runtime.audit)
        with pytest.raises(redis_store.RedisUnavailable):
            await terms.publish(amended("2026-12-22"), reason="routine",
                                effective_at=runtime.clock() + dt.timedelta(days=10), by="cli:olga",
                                address="localhost")
    finally:
        await dead.aclose()
    assert [v.version for v in await terms.versions()][-1] == "2026-12-22"
    [entry] = await runtime.audit.recent(action="version_publish")
    assert (entry.actor, entry.target, entry.address) == ("cli:olga", "2026-12-22", "localhost")
    assert entry.after["notice"] is None and entry.after["reason"] == "routine"


def test_a_diff_shows_a_change_of_summary_alone():
    # Users see the summaries (条款, the welcome): a version changing only one
    # was shown to admins as "the same text".
    from bot import terms_diff

    seed = load_seed()
    first = seed.sections[0]
    changed = dataclasses.replace(seed, version="2026-12-09",
                                  sections=(dataclasses.replace(first, summary=first.summary + "（更新）"), *seed.sections[1:]))
    diff = terms_diff.unified(seed, changed)
    assert "+第1节摘要 " in diff and "（更新）" in diff
    assert terms_diff.unified(seed, seed) == ""


def test_a_summary_names_a_clause_however_it_is_written():
    # "第 4 节：补充一句" did not count as naming 4.1: a rightly named change was warned
    # of, and a draft's reverting check would have refused it.
    from bot.amendment_rules import _named

    for line in ("第 4 节：补充", "第四节：补充", "4.1 补充", "４．１ 补充", "第4节第1款：补充", "第四节第一条：补充"):
        assert _named((4, 1), [line]), line
    assert _named((12, 3), ["第十二节第三款：调整"])
    for line in ("第 5 节：补充", "14.1 补充", "第四十节：补充", "第4节第2款"):
        assert not _named((4, 1), [line]), line
