"""Traditional characters: questions and commands typed in Traditional Chinese
are understood as their Simplified twins (bot/traditional.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.agreement import load_seed
from bot.qa import DEFAULT_DATA_DIR, QA
from bot.traditional import TO_SIMPLIFIED, simplified

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def qa(tmp_path_factory) -> QA:
    return QA.build(load_seed(), cache_dir=tmp_path_factory.mktemp("jieba-cache"))


def test_simplified_text_folds_to_itself():
    # A key that is also a Simplified character (著 of 著作权) would change the
    # agreement's words and the commands.
    # Not the question sets (*.jsonl): those are what users type, Traditional too.
    sources = [*sorted((ROOT / "data" / "agreement").iterdir()),
               *sorted(p for p in DEFAULT_DATA_DIR.iterdir() if p.suffix != ".jsonl"),
               *(ROOT / "bot" / name for name in ("texts.py", "qa_texts.py", "api_texts.py", "chat.py", "dialogs.py"))]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        changed = sorted({c for c in text if simplified(c) != c})
        assert not changed, (path.name, changed)
    assert len(TO_SIMPLIFIED) > 600


@pytest.mark.parametrize("traditional, twin", [
    ("我上傳的圖片版權歸誰？", "我上传的图片版权归谁？"),
    ("協議修改了會通知我嗎", "协议修改了会通知我吗"),
    ("你們會刪除我的帳號嗎", "你们会删除我的帐号吗"),
    ("服務停止了怎麼辦", "服务停止了怎么办"),
    ("我的個人資訊會給第三方嗎", "我的个人资讯会给第三方吗"),
])
def test_a_traditional_question_gets_the_answer_of_its_simplified_twin(qa, traditional, twin):
    assert simplified(traditional) == twin
    got, expected = qa.answer(traditional), qa.answer(twin)
    assert (got.kind, got.refs, got.text) == (expected.kind, expected.refs, expected.text)


def test_the_copyright_question_in_traditional_quotes_its_clause(qa):
    answer = qa.answer("我上傳的圖片版權歸誰？")
    assert answer.kind == "answer" and answer.refs == ("4.1",)


async def test_chat_takes_traditional_commands(service):
    svc = service
    assert await svc.wechat.ask("o-trad", "條款") == await svc.wechat.ask("o-simp", "条款")
    assert "您尚未同意" in await svc.wechat.ask("o-trad", "我同意了嗎？")
    reply = await svc.wechat.ask("o-trad", "退訂 服務公告")
    assert "已退订“服务公告”" in reply
    assert "服务公告：已退订" in await svc.wechat.ask("o-trad", "通知設置")
    # Hong Kong forms (閲, 狀) and Taiwan's word for settings (設定).
    assert "已恢复" in await svc.wechat.ask("o-trad", "訂閲 服務公告")
    assert "服务公告：接收" in await svc.wechat.ask("o-trad", "通知設定")
    assert "您尚未同意" in await svc.wechat.ask("o-trad", "同意狀態")


async def test_registration_takes_traditional_one_word_answers(service):
    svc = service
    assert "已记录" in await svc.wechat.ask("o-trad-reg", "同意")
    await svc.wechat.ask("o-trad-reg", "註冊")
    step = await svc.wechat.ask("o-trad-reg", "企業")
    assert "第 2 步" in step, step
