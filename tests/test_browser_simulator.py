"""The chat simulator in a real browser (Debian's Chromium, headless).

A newcomer's five minutes: create a user, follow, accept the agreement from the
menu, register as an enterprise, ask a question, and watch a security notice
arrive live. Screenshots are kept in the test's tmp directory as artefacts
(and copied to ``$WETOOP_TEST_ARTEFACTS`` when set, for CI to upload); with
``WETOOP_UPDATE_SCREENSHOTS=1`` the final one also replaces
``docs/screenshots/simulator.png`` (the README's).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from bot.admin_accounts import CLI
from tests.conftest import AES_KEY
from tests.test_registration import CODE
from wechat.menu import load_menu

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
README_SHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshots" / "simulator.png"

ADMIN_PASSWORD = "simulator-test-password"

#: How long a reply may take in the page (the service's own deadline is 4.5 s).
WAIT_MS = 15_000


@pytest.fixture
async def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package to run the browser tests")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def sim(make_service, tmp_path):
    """The service with the simulator on, safe mode possible, the menu pushed
    and a notice worker running, as in the demo."""
    svc = await make_service(wechat_aes_key=AES_KEY, simulator=True, data_dir=tmp_path)
    await svc.runtime.wechat.menu.create(load_menu())
    stop = asyncio.Event()
    worker = asyncio.create_task(svc.runtime.worker(concurrency=2).run(stop))
    yield svc
    stop.set()
    await worker


class Chat:
    """The simulator page, driven like a person would."""

    def __init__(self, page, shots: Path) -> None:
        self.page = page
        self.shots = shots
        self.count = 0

    async def bot_texts(self) -> list[str]:
        return await self.page.locator(".msg.from-bot .bubble").all_inner_texts()

    async def _wait_for_reply(self, before: int) -> str:
        await self.page.wait_for_function(
            "n => document.querySelectorAll('.msg.from-bot .bubble').length > n", arg=before, timeout=WAIT_MS
        )
        return (await self.bot_texts())[-1]

    async def say(self, text: str) -> str:
        before = len(await self.bot_texts())
        box = self.page.locator("#text-input")
        await box.fill(text)
        await box.press("Enter")
        await self.page.locator(".msg.from-user .bubble", has_text=text).last.wait_for()
        return await self._wait_for_reply(before)

    async def tap(self, group: str, item: str | None = None) -> str:
        before = len(await self.bot_texts())
        await self.page.locator(".menu-item", has_text=group).click()
        if item is not None:
            await self.page.locator(".submenu button", has_text=item).click()
        return await self._wait_for_reply(before)

    async def shot(self, name: str) -> Path:
        self.count += 1
        path = self.shots / f"{self.count:02d}-{name}.png"
        await self.page.screenshot(path=str(path))
        keep = os.environ.get("WETOOP_TEST_ARTEFACTS")
        if keep:  # CI uploads this directory
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(keep) / f"simulator-{path.name}")
        return path


async def test_newcomer_tour_in_a_real_browser(browser, sim, emulator, tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    page = await browser.new_page(viewport={"width": 1100, "height": 860}, locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(sim.url + "/simulator")
    await page.wait_for_selector("body[data-ready='1']")
    chat = Chat(page, shots)

    # The menu bar is the one pushed to (the emulator's) WeChat; safe mode is on.
    assert await page.locator(".menu-item").all_inner_texts() == [b["name"] for b in load_menu()["button"]]
    assert "active" in await page.locator("#mode-safe").get_attribute("class")

    # A new user, who has not followed yet, cannot type.
    await page.locator("#new-user-nickname").fill("小明")
    await page.locator("#new-user-btn").click()
    await page.locator(".user.selected .name", has_text="小明").wait_for()
    assert await page.locator("#text-input").is_disabled()
    await chat.shot("new-user")

    await page.locator("#follow-btn").click()
    welcome = await chat._wait_for_reply(0)
    assert welcome.startswith("欢迎关注微拓")
    await page.locator(".user.selected .state", has_text="已关注").wait_for()
    assert await page.locator("#follow-btn").inner_text() == "取消关注"
    await chat.shot("followed")

    accepted = await chat.tap("服务协议", "同意协议")
    assert "已记录：您同意了" in accepted
    openid = await page.locator(".user.selected").get_attribute("data-openid")
    assert (await sim.runtime.consents.state(openid)).accepted

    # The pushes went in safe mode: the XML shown under a reply is encrypted.
    wire = await page.locator(".msg.from-bot details.wire pre").last.text_content()
    assert "encrypt_type=aes" in wire and "<Encrypt>" in wire

    replies = []
    for answer in ("注册", "企业", "南宁市测试贸易有限公司", CODE, "王五", "13812345678", "wangwu@example.com"):
        replies.append(await chat.say(answer))
    assert f"统一社会信用代码：{CODE}" in replies[-1]
    done = await chat.say("确认")
    assert "已提交" in done and "待审核" in done
    merchant = await sim.runtime.merchants.get(openid)
    assert (merchant.entity_type, merchant.credit_code, merchant.status) == ("enterprise", CODE, "pending_review")
    await chat.shot("registered")

    answer = await chat.say("我上传的图片版权归谁？")
    assert "第4节" in answer and "4.1" in answer and "归您所有" in answer
    await chat.shot("question")

    # 微拓's admin sends a security notice from the admin console, in another tab.
    await sim.runtime.admins.create("demo", "owner", ADMIN_PASSWORD, by=CLI)
    admin = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    admin.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await admin.goto(sim.url + "/admin/notices/new")
    await admin.fill("input[name=name]", "demo")
    await admin.fill("input[name=password]", ADMIN_PASSWORD)
    await admin.click("button[type=submit]")
    await admin.wait_for_url(sim.url + "/admin/notices/new")
    await admin.select_option("select[name=category]", "security")
    await admin.fill("input[name=title]", "账户安全提醒")
    await admin.fill("textarea[name=body]", "近期有人冒充微拓客服索要验证码，请勿向任何人透露验证码。")
    await admin.click("button[value=preview]")
    await admin.wait_for_selector("#audience-size")
    await admin.click("#send")
    await admin.wait_for_url("**/admin/notices/*")
    await admin.close()

    live = page.locator(".msg.live[data-kind='custom']", has_text="账户安全提醒")
    await live.wait_for(timeout=WAIT_MS)
    assert await live.locator(".tag").inner_text() == "客服消息"
    assert "请勿向任何人透露验证码" in await live.locator(".bubble").inner_text()
    final = await chat.shot("security-notice")
    if os.environ.get("WETOOP_UPDATE_SCREENSHOTS") == "1":
        README_SHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(final, README_SHOT)

    # A reload keeps the conversation: what was said and answered, and the live notice, once each.
    await page.reload()
    await page.wait_for_selector("body[data-ready='1']")
    await page.locator(".msg.from-user .bubble", has_text="我上传的图片版权归谁？").wait_for()
    assert "归您所有" in " ".join(await chat.bot_texts())
    await asyncio.sleep(1.5)  # a poll or two: the notice is not added a second time
    assert await page.locator(".msg.live[data-kind='custom']", has_text="账户安全提醒").count() == 1

    # Unfollowing closes the conversation again.
    await page.locator("#follow-btn").click()
    await page.locator(".user.selected .state", has_text="未关注").wait_for()
    assert await page.locator("#text-input").is_disabled()
    assert emulator.state.users[openid]["subscribed"] is False
    assert errors == []
    await page.close()


async def test_phone_layout_and_errors_in_the_page(browser, sim, tmp_path):
    page = await browser.new_page(viewport={"width": 390, "height": 780}, locale="zh-CN")
    await page.goto(sim.url + "/simulator")
    await page.wait_for_selector("body[data-ready='1']")
    # On a phone the user list folds away behind ☰.
    sidebar = page.locator("#sidebar")
    box = await sidebar.bounding_box()
    assert box["x"] + box["width"] <= 0
    await page.locator("#toggle-users").click()
    await page.wait_for_function("document.getElementById('sidebar').getBoundingClientRect().left >= 0")

    # A nickname the server refuses gets its Chinese message in the page.
    await page.locator("#new-user-nickname").evaluate("(el) => { el.removeAttribute('maxlength'); }")
    await page.locator("#new-user-nickname").fill("长" * 21)
    await page.locator("#new-user-btn").click()
    toast = page.locator("#toast")
    await toast.wait_for()
    assert "昵称需为 1 到 20 个字" in await toast.inner_text()

    await page.locator("#new-user-nickname").fill("小红")
    await page.locator("#new-user-btn").click()
    # Selecting a user closes the list again.
    await page.wait_for_function("document.getElementById('sidebar').getBoundingClientRect().right <= 0")
    await page.locator("#follow-btn").click()
    await page.locator(".msg.from-bot .bubble").first.wait_for(timeout=WAIT_MS)
    await page.screenshot(path=str(tmp_path / "phone.png"))
    await page.close()

