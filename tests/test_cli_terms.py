"""``wetoop-bot terms / consents export / export`` as an admin runs them."""

from __future__ import annotations

import dataclasses

import csv
import io
import json
import re

import pytest

from bot.agreement import load_seed
from tests.test_cli import run_cli


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A data directory whose embedded servers stay up for the module, as
    while a service runs: each command attaches to them instead of starting
    and stopping its own (seconds a command; tests/test_cli.py covers that)."""
    from storage.embedded import EmbeddedServers

    path = tmp_path_factory.mktemp("cli-terms")
    embedded = EmbeddedServers(path).start()
    yield path
    embedded.stop()


def cli(data_dir, *args: str):
    return run_cli(*args, "--data-dir", str(data_dir))


def test_show_prints_the_publish_format_and_publish_reads_it(data_dir, tmp_path):
    shown = cli(data_dir, "terms", "show", "2022-05-22")
    assert shown.returncode == 0, shown.stderr
    assert 'version = "2022-05-22"' in shown.stdout
    assert load_seed().sections[3].clauses[1] in shown.stdout

    edited = (
        shown.stdout.replace('version = "2022-05-22"', 'version = "2027-01-15"')
        .replace("changes = []", 'changes = ["第5节第2款：明确停止服务前的通知"]')
        .replace("尽管我们对此表示非常遗憾。", "尽管我们对此表示非常遗憾,我们会提前通知您。")
    )
    draft = tmp_path / "2027-01-15.toml"
    draft.write_text(edited, encoding="utf-8")

    # What the file would change, before it is published.
    preview = cli(data_dir, "terms", "diff", "2022-05-22", str(draft))
    assert preview.returncode == 0, preview.stderr
    assert "+5.2 您可以随时停止使用我们的服务,尽管我们对此表示非常遗憾,我们会提前通知您。" in preview.stdout
    missing = cli(data_dir, "terms", "diff", "2022-05-22", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "文件或目录不存在" in missing.stderr
    assert "没有提到" not in preview.stderr  # the summary names 5.2
    # A summary naming another clause than the one changed: said (users see only the summary).
    misnamed = tmp_path / "misnamed.toml"
    misnamed.write_text(edited.replace("第5节第2款：明确停止服务前的通知", "第2节第1款：明确停止服务前的通知"), encoding="utf-8")
    warned = cli(data_dir, "terms", "diff", "2022-05-22", str(misnamed))
    assert warned.returncode == 0 and "第5.2条有修改，但修改摘要（changes）没有提到" in warned.stderr, warned.stderr
    # The same text, its key points reworded: everyone who accepted would be asked again for nothing new.
    repointed = tmp_path / "repointed.toml"
    repointed.write_text(shown.stdout.replace('version = "2022-05-22"', 'version = "2027-01-16"')
                         .replace("changes = []", 'changes = ["要点措辞调整"]').replace("并保管好登录码", "并妥善保管登录码"),
                         encoding="utf-8")
    same = cli(data_dir, "terms", "diff", "2022-05-22", str(repointed))
    assert same.returncode == 0 and "条款全文与版本 2022-05-22 相同" in same.stderr, same.stderr
    assert "条款全文" not in warned.stderr

    # A routine change effective tomorrow breaks the 7-day rule: exit 2, the rule's reason.
    too_soon = cli(data_dir, "terms", "publish", str(draft), "--effective-at", "now", "--reason", "routine")
    assert too_soon.returncode == 2
    assert "7 天" in too_soon.stderr and "Traceback" not in too_soon.stderr
    past = cli(data_dir, "terms", "publish", str(draft), "--effective-at", "2020-01-01", "--reason", "legal")
    assert past.returncode == 2 and "追溯" in past.stderr

    ok = cli(data_dir, "terms", "publish", str(draft), "--effective-at", "2027-01-15T00:00:00+08:00", "--reason", "routine")
    assert ok.returncode == 0, ok.stderr
    assert "已发布版本 2027-01-15" in ok.stdout and "条款修改通知" in ok.stdout

    again = cli(data_dir, "terms", "publish", str(draft), "--effective-at", "2027-02-15", "--reason", "routine")
    assert again.returncode == 2 and "不可修改" in again.stderr

    listed = cli(data_dir, "terms", "list")
    assert listed.returncode == 0
    assert "2022-05-22" in listed.stdout and "当前" in listed.stdout
    assert "2027-01-15" in listed.stdout and "待生效" in listed.stdout

    diff = cli(data_dir, "terms", "diff", "2022-05-22", "2027-01-15")
    assert diff.returncode == 0
    assert "-5.2 您可以随时停止使用我们的服务,尽管我们对此表示非常遗憾。" in diff.stdout
    assert "+5.2 您可以随时停止使用我们的服务,尽管我们对此表示非常遗憾,我们会提前通知您。" in diff.stdout

    # The shown file of the new version carries its metadata as comments and parses again.
    shown_new = cli(data_dir, "terms", "show", "2027-01-15")
    assert "# 修改原因：routine" in shown_new.stdout and "第5节第2款" in shown_new.stdout

    # A version not yet in force can be withdrawn (users are told); one in force cannot.
    in_force = cli(data_dir, "terms", "withdraw", "2022-05-22", "--reason", "试试")
    assert in_force.returncode == 2 and "已生效的版本不能撤回" in in_force.stderr
    assert "（北京时间）生效，" in in_force.stderr, in_force.stderr  # no space after the bracket
    withdrawn = cli(data_dir, "terms", "withdraw", "2027-01-15", "--reason", "改为明年再议")
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert "已撤回版本 2027-01-15" in withdrawn.stdout
    # Withdrawn again (a script run twice): a conflict that says when, not "no such version".
    twice = cli(data_dir, "terms", "withdraw", "2027-01-15", "--reason", "再撤一次")
    assert twice.returncode == 2 and "Traceback" not in twice.stderr
    assert "版本 2027-01-15 已于" in twice.stderr and "无需再次撤回" in twice.stderr and "改为明年再议" in twice.stderr
    assert "（北京时间）撤回（原因" in twice.stderr, twice.stderr
    listed = cli(data_dir, "terms", "list").stdout
    assert any("2027-01-15" in line and "已撤回" in line for line in listed.splitlines())
    # Shown, a withdrawn version is printed (to fix and publish again) with a note
    # on stderr; published again, it is refused (not "no such version").
    gone = cli(data_dir, "terms", "show", "2027-01-15")
    assert gone.returncode == 0 and 'version = "2027-01-15"' in gone.stdout
    assert "已于" in gone.stderr and "（北京时间）撤回，不会生效" in gone.stderr and "改为明年再议" in gone.stderr
    again = cli(data_dir, "terms", "publish", str(draft), "--effective-at", "2027-03-15", "--reason", "routine")
    assert again.returncode == 2 and "曾发布并已撤回" in again.stderr
    # Its routine change carried into a legal version taking effect now, unnamed,
    # applied at once with no week's notice and no word to users: refused.
    smuggled = tmp_path / "smuggled.toml"
    smuggled.write_text(edited.replace('version = "2027-01-15"', 'version = "2026-12-01-legal"')
                        .replace("第5节第2款：明确停止服务前的通知", "第3节第1款：依法补充个人信息保护说明")
                        .replace("使用我们的服务即表示您同意", "使用我们的服务即表示您知悉并同意"), encoding="utf-8")
    refused = cli(data_dir, "terms", "publish", str(smuggled), "--effective-at", "now", "--reason", "legal")
    assert refused.returncode == 2 and "第5.2条有修改却没有写在 changes 中" in refused.stderr, refused.stderr
    assert "2026-12-01-legal" not in cli(data_dir, "terms", "list").stdout
    # Both are in the audit log, from the one place that writes them (bot.terms).
    logged = _audit_entries(data_dir)
    assert [(e["action"], e["target"], e["actor"]) for e in logged] == [
        ("version_publish", "2027-01-15", "cli"), ("version_withdraw", "2027-01-15", "cli")]
    assert logged[0]["after"]["reason"] == "routine" and logged[1]["after"]["reason"] == "改为明年再议"
    assert all(e["after"]["notice"] for e in logged)


def _audit_entries(data_dir) -> list[dict]:
    """The audit log's version entries, oldest first, read with the driver."""
    import pymongo

    from storage.embedded import EmbeddedServers

    embedded = EmbeddedServers(data_dir).start()
    try:
        client = pymongo.MongoClient(embedded.url("mongo"))
        try:
            found = client.get_default_database("wetoop")["admin_audit"].find(
                {"action": {"$in": ["version_publish", "version_withdraw"]}}).sort("at", 1)
            return list(found)
        finally:
            client.close()
    finally:
        embedded.stop()


@pytest.mark.parametrize(
    "args, needle",
    [
        (("terms", "show", "1999-01-01"), "没有版本"),
        (("terms", "diff", "2022-05-22", "nope"), "没有版本"),
        (("terms", "publish", "/no/such/file.toml", "--effective-at", "now", "--reason", "legal"), "无法读取 /no/such/file.toml：文件或目录不存在"),
        (("terms", "publish", "/etc/hostname", "--effective-at", "now", "--reason", "legal"), "TOML"),
        (("consents", "export", "--since", "yesterday"), "ISO 8601"),
        (("consents", "export", "--since", "0001-01-01"), "超出范围"),
        (("consents", "export", "--output", "/no/such/dir/consents.csv"), "无法写入 /no/such/dir/consents.csv：文件或目录不存在"),
        (("export", "--openid", "o-nobody"), "没有 openid 为 o-nobody 的用户"),
        (("export", "--openid", " "), "不能为空"),
        (("consents", "export", "--since", "2026-11-28", "--until", "2026-11-01"), "wetoop-bot: --since（2026-11-28）应早于 --until（2026-11-01）："),  # was an empty file
        (("consents", "export", "--version", "nope"), "没有版本"),  # was "0 records"
    ],
)
def test_refusals_exit_2_with_a_reason(data_dir, args, needle):
    result = cli(data_dir, *args)
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_a_malformed_version_file_is_explained_in_chinese(data_dir, tmp_path):
    # It ended with tomllib's "Illegal character '\n' (at line 1, column 13)".
    bad = tmp_path / "bad.toml"
    bad.write_text('version = "2026-12-30\ntitle = "x"\n', encoding="utf-8")
    result = cli(data_dir, "terms", "publish", str(bad), "--effective-at", "now", "--reason", "legal")
    assert result.returncode == 2
    assert "不是有效的 TOML：第 1 行第 22 列附近：有不允许的字符" in result.stderr, result.stderr
    assert str(bad) in result.stderr  # which file (terms diff reads two)
    extra = tmp_path / "extra.toml"
    extra.write_text('version = "x" title = "y"\n', encoding="utf-8")
    result = cli(data_dir, "terms", "diff", "2022-05-22", str(extra))
    assert result.returncode == 2 and "一行只能写一项" in result.stderr and str(extra) in result.stderr
    assert "Illegal" not in result.stderr and "Traceback" not in result.stderr


def test_bad_effective_at_and_reason(data_dir, tmp_path):
    draft = tmp_path / "d.toml"
    draft.write_text(load_seed().to_toml(), encoding="utf-8")
    bad_time = cli(data_dir, "terms", "publish", str(draft), "--effective-at", "next week", "--reason", "legal")
    assert bad_time.returncode == 2 and "ISO 8601" in bad_time.stderr
    long_title = tmp_path / "long.toml"
    seed = load_seed()
    long_title.write_text(dataclasses.replace(seed, version="2026-12-30", title="微拓" * 30, changes=("文字修订",)).to_toml(),
                          encoding="utf-8")
    refused = cli(data_dir, "terms", "publish", str(long_title), "--effective-at", "now", "--reason", "legal")
    assert refused.returncode == 2 and "协议标题（title）或修改摘要（changes）过长" in refused.stderr, refused.stderr
    far = cli(data_dir, "terms", "publish", str(draft), "--effective-at", "9999-12-31T23:59:59-12:00", "--reason", "legal")
    assert far.returncode == 2 and "超出范围" in far.stderr and "Traceback" not in far.stderr
    later = tmp_path / "later.toml"
    later.write_text(dataclasses.replace(seed, version="2026-12-31-far", changes=("文字修订",)).to_toml(), encoding="utf-8")
    too_far = cli(data_dir, "terms", "publish", str(later), "--effective-at", "2099-01-01", "--reason", "routine")
    assert too_far.returncode == 2 and "2099-01-01 00:00（北京时间）太远" in too_far.stderr, too_far.stderr
    assert "（北京时间）之前）" in too_far.stderr and "（北京时间） " not in too_far.stderr, too_far.stderr
    bad_reason = cli(data_dir, "terms", "publish", str(draft), "--effective-at", "now", "--reason", "whim")
    assert bad_reason.returncode == 2


async def test_consents_export_and_user_export(tmp_path):
    """Records made through chat come out of the CLI."""
    from storage.embedded import EmbeddedServers

    embedded = EmbeddedServers(tmp_path).start()  # up until the end, as while a service runs
    try:
        await _export_checks(tmp_path, embedded)
    finally:
        embedded.stop()


async def _export_checks(tmp_path, embedded):
    import datetime as dt

    from service.config import Config
    from service.runtime import Runtime
    from bot.consent import Origin

    runtime = Runtime(Config(data_dir=tmp_path), embedded.url("mongo"), embedded.url("redis"))
    try:
        await runtime.prepare()
        await runtime.consents.accept("o-csv", Origin("official_account", "msg:1", meta={"k": "v"}))
        await runtime.consents.decline("o-other", Origin("miniprogram", "req:2"))
    finally:
        await runtime.close()

    result = cli(tmp_path, "consents", "export", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["openid"], r["action"], r["channel"], r["version"]) for r in rows] == [
        ("o-csv", "accept", "official_account", "2022-05-22"),
        ("o-other", "decline", "miniprogram", "2022-05-22"),
    ]
    assert rows[0]["text_sha256"] == load_seed().text_sha256
    assert dt.datetime.fromisoformat(rows[0]["at"]).utcoffset() == dt.timedelta(hours=8)  # Beijing time
    # To the millisecond: records of one second (a user's 同意 then 撤回) kept the same time and lost their order.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+08:00", rows[0]["at"]), rows[0]["at"]
    # To a file, as the console's download: with a BOM, so Excel reads the Chinese right.
    saved = cli(tmp_path, "consents", "export", "--format", "csv", "--output", str(tmp_path / "c.csv"))
    assert saved.returncode == 0 and (tmp_path / "c.csv").read_bytes().startswith("\ufeff".encode())
    assert "\ufeff" not in result.stdout  # not on a pipe

    # A date alone as --until takes in that whole Beijing day, as the console's date fields do.
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date().isoformat()
    same_day = cli(tmp_path, "consents", "export", "--format", "jsonl", "--since", today, "--until", today)
    assert len(same_day.stdout.splitlines()) == 2, same_day.stderr
    before = cli(tmp_path, "consents", "export", "--format", "jsonl", "--until", today + "T00:00:00+08:00")
    assert before.stdout == ""  # a full time stays exclusive
    basic = cli(tmp_path, "consents", "export", "--format", "jsonl", "--until", today.replace("-", ""))
    assert len(basic.stdout.splitlines()) == 2, basic.stderr  # 20261127 is that day too (it gave nothing)

    jsonl = cli(tmp_path, "consents", "export", "--format", "jsonl", "--action", "accept")
    lines = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [(l["openid"], l["meta"]) for l in lines] == [("o-csv", {"k": "v"})]

    exported = cli(tmp_path, "export", "--openid", "o-csv")
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    assert set(document) >= {"openid", "merchant", "consents", "preferences", "deliveries"}
    assert document["merchant"] is None
    assert [(c["version"], c["action"], c["channel"]) for c in document["consents"]] == [
        ("2022-05-22", "accept", "official_account")
    ]
    assert set(document["consents"][0]) >= {"version", "action", "at", "channel", "text_sha256"}


def test_diff_and_publish_say_which_qa_examples_a_reworded_clause_drops(data_dir, tmp_path):
    # 5.1 reworded without its examples' anchor: the Q&A lost its questions for
    # that clause with only a line in the server's log.
    shown = cli(data_dir, "terms", "show", "2022-05-22").stdout
    edited = (shown.replace('version = "2022-05-22"', 'version = "2027-01-16"')
              .replace("changes = []", 'changes = ["第5节第1款：举例说明新增功能"]')
              .replace("我们可能会增加或删除功能", "我们可能会增加（例如直播带货）或删除功能"))
    draft = tmp_path / "2027-01-16.toml"
    draft.write_text(edited, encoding="utf-8")
    preview = cli(data_dir, "terms", "diff", "2022-05-22", str(draft))
    assert preview.returncode == 0 and "条款 5.1 的" in preview.stderr and "anchor" in preview.stderr, preview.stderr
    published = cli(data_dir, "terms", "publish", str(draft), "--effective-at", "now", "--reason", "new_feature")
    assert published.returncode == 0 and "条款 5.1 的" in published.stderr, published.stderr
    # A change that keeps every anchor says nothing of the kind.
    quiet = cli(data_dir, "terms", "diff", "2022-05-22", "2022-05-22")
    assert "示例问题" not in quiet.stderr


def test_consents_given_elsewhere_are_imported_once_under_the_ledgers_rules(data_dir, tmp_path):
    # The ledger had an admin_import channel that nothing could write.
    lines = [
        {"openid": "o-paper-1", "version": "2022-05-22", "action": "accept", "at": "2024-03-01T10:00:00+08:00",
         "ref": "合同-001"},
        {"openid": "o-paper-2", "version": "2022-05-22", "action": "accept", "at": "2024-03-02 09:30"},
    ]
    good = tmp_path / "paper.jsonl"
    good.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n", encoding="utf-8")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in [
        {**lines[0], "ref": "ok-1"},
        {"openid": "o-paper-3", "version": "2022-05-22", "action": "accept", "at": "2099-01-01"},
        {"openid": "o-paper-4", "version": "1999-01-01", "action": "accept", "at": "2024-03-01"},
        {"openid": "bad openid", "version": "2022-05-22", "action": "maybe", "at": "x"},
    ]), encoding="utf-8")
    refused = cli(data_dir, "consents", "import", str(bad))
    assert refused.returncode == 2 and "第 2 行" in refused.stderr and "将来" in refused.stderr, refused.stderr
    assert "第 3 行" in refused.stderr and "第 4 行" in refused.stderr and "没有导入任何记录" in refused.stderr
    assert "Traceback" not in refused.stderr
    # "ref": "合同-001" has characters refs may not hold: said, nothing written either.
    mixed = cli(data_dir, "consents", "import", str(good))
    assert mixed.returncode == 2 and "ref" in mixed.stderr
    good.write_text(good.read_text(encoding="utf-8").replace("合同-001", "contract-001"), encoding="utf-8")
    done = cli(data_dir, "consents", "import", str(good), "--by", "olga")
    assert done.returncode == 0 and "已导入 2 条" in done.stdout, done.stderr
    again = cli(data_dir, "consents", "import", str(good))
    assert again.returncode == 0 and "已导入 0 条" in again.stdout and "2 条此前已导入" in again.stdout
    exported = cli(data_dir, "consents", "export", "--format", "jsonl").stdout
    imported = [json.loads(line) for line in exported.splitlines() if '"o-paper-' in line]
    assert sorted(r["openid"] for r in imported) == ["o-paper-1", "o-paper-2"]
    assert all(r["channel"] == "admin_import" for r in imported)
    first = next(r for r in imported if r["openid"] == "o-paper-1")
    assert first["message_id"] == "contract-001" and first["at"].startswith("2024-03-01T10:00:00")
    assert '"action": "accept"' in cli(data_dir, "export", "--openid", "o-paper-1").stdout
    missing = cli(data_dir, "consents", "import", str(tmp_path / "none.jsonl"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_consents_import_names_every_bad_line_be_it_no_json_or_against_a_rule(data_dir, tmp_path):
    # The first line that was no JSON stopped the check: the other such lines,
    # and every rule the valid ones broke, went unsaid until that one was fixed.
    good = {"openid": "o-lines-1", "version": "2022-05-22", "action": "accept", "at": "2024-03-01T10:00:00+08:00"}
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join([
        "not json", json.dumps(good), "{bad", json.dumps({**good, "openid": "o-lines-2", "version": "1999-01-01"}),
        "", "[1]",
    ]), encoding="utf-8")
    refused = cli(data_dir, "consents", "import", str(mixed))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "mixed.jsonl 中有 4 行有误：" in refused.stderr, refused.stderr
    assert "第 1 行不是 JSON" in refused.stderr and "第 3 行不是 JSON" in refused.stderr
    assert "第 4 行：没有" in refused.stderr and "第 6 行应为对象" in refused.stderr
    assert "第 2 行" not in refused.stderr and "没有导入任何记录" in refused.stderr
    # Many: the first five, and how many there are (as the CLI's other lists).
    many = tmp_path / "many.jsonl"
    many.write_text("\n".join(f"line {n}" for n in range(1, 9)), encoding="utf-8")
    listed = cli(data_dir, "consents", "import", str(many))
    assert listed.returncode == 2 and "有 8 行有误（只列出前 5 行）" in listed.stderr, listed.stderr
    assert "第 5 行不是 JSON" in listed.stderr and "第 6 行" not in listed.stderr
    exported = cli(data_dir, "consents", "export", "--format", "jsonl").stdout
    assert "o-lines-" not in exported


def test_consents_import_shows_times_in_beijing_time(data_dir, tmp_path):
    # The admin typed Beijing time and reads it everywhere else: the refusal showed UTC (2022-05-01T02:00:00+00:00).
    early = tmp_path / "early.jsonl"
    early.write_text("\n".join(json.dumps(line) for line in [
        {"openid": "o-early-1", "version": "2022-05-22", "action": "accept", "at": "2022-05-01 10:00"},
        {"openid": "o-early-2", "version": "2022-05-22", "action": "withdraw", "at": "2022-05-01T10:30:00+08:00"},
    ]), encoding="utf-8")
    refused = cli(data_dir, "consents", "import", str(early))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "第 1 行：2022-05-01 10:00（北京时间）时还没有生效的版本，只能同意或拒绝当时生效的版本" in refused.stderr, refused.stderr
    assert "版本 2022-05-22 自 2022-05-22 00:00（北京时间）起生效" in refused.stderr
    assert "第 2 行：版本 2022-05-22 在 2022-05-01 10:30（北京时间）时尚未生效" in refused.stderr
    assert "+00:00" not in refused.stderr and "02:00" not in refused.stderr


def _withdrawn_version(data_dir, tmp_path, version: str) -> None:
    """Publish ``version`` (a routine change of the version in force, years
    ahead) and withdraw it, whatever the module's other tests published."""
    listed = cli(data_dir, "terms", "list").stdout
    current = next(re.search(r"\d{4}-\d{2}-\d{2}\S*", line).group(0) for line in listed.splitlines() if "当前" in line)
    shown = cli(data_dir, "terms", "show", current).stdout
    draft = tmp_path / f"{version}.toml"
    draft.write_text(re.sub(r"(?m)^changes = \[.*?\]$", 'changes = ["第6节第1款：明确企业须接受补充条款"]',
                            shown.replace(f'version = "{current}"', f'version = "{version}"')
                            .replace("该企业必须接受本条款", "该企业必须接受本条款及其补充条款"), flags=re.S),
                     encoding="utf-8")
    published = cli(data_dir, "terms", "publish", str(draft), "--effective-at", f"{version}T00:00:00+08:00",
                    "--reason", "routine")
    assert published.returncode == 0, published.stderr
    withdrawn = cli(data_dir, "terms", "withdraw", version, "--reason", "暂缓修改")
    assert withdrawn.returncode == 0, withdrawn.stderr


def test_consents_import_says_a_withdrawn_version_never_took_effect(data_dir, tmp_path):
    # It said 没有已发布的版本 '2027-08-08', as if the admin had mistyped it.
    _withdrawn_version(data_dir, tmp_path, "2027-08-08")
    lines = tmp_path / "withdrawn.jsonl"
    lines.write_text(json.dumps({"openid": "o-gone-1", "version": "2027-08-08", "action": "accept",
                                 "at": "2024-03-01 10:00"}), encoding="utf-8")
    refused = cli(data_dir, "consents", "import", str(lines))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert re.search(r"第 1 行：版本 2027-08-08 于 \d{4}-\d\d-\d\d \d\d:\d\d（北京时间）发布、"
                     r"于 \d{4}-\d\d-\d\d \d\d:\d\d（北京时间）撤回，从未生效", refused.stderr), refused.stderr
    assert "没有已发布的版本" not in refused.stderr


def test_consents_import_withdraws_only_an_acceptance_that_stands(data_dir, tmp_path):
    # A withdrawal with nothing to withdraw was recorded, which chat and the API refuse (nothing_to_withdraw).
    def jsonl(name, *rows):
        path = tmp_path / name
        path.write_text("\n".join(json.dumps({"version": "2022-05-22", **dict(zip(("openid", "action", "at"), row))})
                                  for row in rows), encoding="utf-8")
        return str(path)

    earlier = jsonl("earlier.jsonl", ("o-wd-2", "accept", "2024-03-01 10:00"), ("o-wd-2", "withdraw", "2024-03-02 10:00"),
                    ("o-wd-4", "accept", "2024-03-01 10:00"), ("o-wd-5", "decline", "2024-03-01 10:00"))
    done = cli(data_dir, "consents", "import", earlier)
    assert done.returncode == 0 and "已导入 4 条" in done.stdout, done.stderr
    # Imported again, its withdrawal still follows its acceptance (the ledger's copy of a line counts once).
    again = cli(data_dir, "consents", "import", earlier)
    assert again.returncode == 0 and "4 条此前已导入" in again.stdout, again.stderr

    refused = cli(data_dir, "consents", "import", jsonl(
        "later.jsonl",
        ("o-wd-1", "withdraw", "2024-03-02 10:00"),  # nothing at all
        ("o-wd-3", "withdraw", "2024-03-02 10:00"),  # accepted only later, further down the file
        ("o-wd-3", "accept", "2024-03-05 10:00"),
        ("o-wd-4", "withdraw", "2024-03-02 10:00"),  # the acceptance imported before stands: fine
        ("o-wd-5", "withdraw", "2024-03-02 10:00"),  # refused
        ("o-wd-2", "withdraw", "2024-03-03 10:00"),  # withdrawn already
    ))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "later.jsonl 中有 4 行有误" in refused.stderr, refused.stderr
    assert "第 1 行：用户 o-wd-1 在 2024-03-02 10:00（北京时间）之前没有同意过任何版本" in refused.stderr
    assert "第 2 行：用户 o-wd-3 在 2024-03-02 10:00（北京时间）之前没有同意过任何版本" in refused.stderr
    assert "第 5 行：用户 o-wd-5 在此之前最后的选择是不同意（2024-03-01 10:00（北京时间））" in refused.stderr
    assert "第 6 行：用户 o-wd-2 在此之前最后的选择是撤回同意" in refused.stderr
    assert "第 3 行" not in refused.stderr and "第 4 行" not in refused.stderr
    # In the same file, after the acceptance it takes back: recorded.
    fine = cli(data_dir, "consents", "import", jsonl("fine.jsonl", ("o-wd-3", "accept", "2024-03-05 10:00"),
                                                     ("o-wd-3", "withdraw", "2024-03-06 10:00"),
                                                     ("o-wd-4", "withdraw", "2024-03-02 10:00")))
    assert fine.returncode == 0 and "已导入 3 条" in fine.stdout, fine.stderr
    other = cli(data_dir, "consents", "import", jsonl("other.jsonl", ("o-wd-4", "withdraw", "2024-03-07 10:00")))
    assert other.returncode == 2 and "最后的选择是撤回同意" in other.stderr, other.stderr
