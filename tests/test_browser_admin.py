"""The admin console in a real browser: Debian's Chromium driven by Playwright.

No browser is downloaded: the test launches ``/usr/bin/chromium`` (``.ci/run``
installs it) and is skipped, with the reason in the ``-ra`` summary, without it.
"""

from __future__ import annotations

import asyncio
import os
import datetime as dt
import shutil
from pathlib import Path

import pytest

from bot.admin_accounts import CLI
from storage.consents import ConsentRecord

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
PASSWORD = "browser-test-password"
RECIPIENTS = 40


def _browser_or_skip():
    if not CHROMIUM.exists():
        pytest.skip("browser test skipped: /usr/bin/chromium is missing (install Debian's chromium package; .ci/run does)")
    try:
        from playwright.async_api import async_playwright, expect
    except ImportError:
        pytest.skip("browser test skipped: the playwright Python package is not installed")
    return async_playwright, expect


async def seed(svc) -> None:
    """Followers inside WeChat's 48-hour window, and a month of consents for the chart."""
    runtime = svc.runtime
    now = runtime.clock()
    for n in range(RECIPIENTS):
        await runtime.followers.subscribed(f"o-browser-{n:03d}", now)
    current = await runtime.terms.current()
    for day in range(30):
        at = now - dt.timedelta(days=29 - day, hours=1)
        for k in range(2 + (day * 7) % 5):
            await runtime.ledger.append(ConsentRecord(
                openid=f"o-browser-{(day * 3 + k) % RECIPIENTS:03d}", version=current.version,
                text_sha256=current.text_sha256, action="accept", channel="official_account", at=at))
        if day % 4 == 1:
            await runtime.ledger.append(ConsentRecord(
                openid=f"o-browser-{(day + 20) % RECIPIENTS:03d}", version=current.version,
                text_sha256=current.text_sha256, action="decline", channel="official_account", at=at))
    await runtime.merchants.save_profile(
        "o-browser-001", {"entity_type": "individual", "entity_name": "南宁小铺", "contact_name": "李明", "phone": "13812345678"})


async def test_owner_logs_in_sends_a_notice_and_watches_it_finish(make_service, emulator, tmp_path):
    async_playwright, expect = _browser_or_skip()
    # A slow shared rate so the bar is seen moving before it reaches 100 %.
    svc = await make_service(data_dir=tmp_path / "data", notice_rate=10)
    await svc.runtime.admins.create("boss", "owner", PASSWORD, by=CLI)
    await seed(svc)
    stop = asyncio.Event()
    worker = asyncio.create_task(svc.runtime.worker(concurrency=4).run(stop))
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
                page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
                offsite = []
                page.on("request", lambda r: offsite.append(r.url) if not r.url.startswith(svc.url) else None)

                # An anonymous visit lands on the log-in form.
                await page.goto(svc.url + "/admin/notices")
                assert "/admin/login" in page.url
                await page.fill("input[name=name]", "boss")
                await page.fill("input[name=password]", PASSWORD)
                await page.click("button[type=submit]")
                await page.wait_for_url(svc.url + "/admin/notices")

                # The dashboard with its chart.
                await page.click("nav >> text=概览")
                await page.wait_for_selector("svg.chart polyline")
                assert await page.locator(".tile .figure").first.inner_text() == str(RECIPIENTS)
                await page.screenshot(path=str(tmp_path / "admin-dashboard.png"), full_page=True)

                # Compose, preview, send.
                await page.click("nav >> text=通知")
                await page.click("text=撰写通知")
                await page.select_option("select[name=category]", "service")
                await page.fill("input[name=title]", "系统维护通知")
                await page.fill("textarea[name=body]", "今晚 23:00 至 24:00 系统维护，期间小程序暂停下单。")
                await page.click("button[value=preview]")
                await page.wait_for_selector(".bubble")
                assert "【服务公告】系统维护通知" in await page.inner_text(".bubble")
                assert f"受众：{RECIPIENTS}人" in (await page.inner_text("#audience-size")).replace(" ", "")
                await page.click("#send")
                await page.wait_for_url("**/admin/notices/*")

                # The live bar: below 100 % at first, then 100 % without reloading.
                first = int(await page.inner_text("[data-field=percent]"))
                # (expect() polls through selectors: the page's CSP forbids eval'd predicates.)
                await expect(page.locator("[data-field=percent]")).to_have_text("100", timeout=60_000)
                assert first < 100
                assert await page.inner_text("[data-field=sent]") == str(RECIPIENTS)
                assert await page.inner_text("[data-field=status_label]") == "已完成"
                assert await page.eval_on_selector("#bar", "bar => bar.value === bar.max")
                await page.screenshot(path=str(tmp_path / "admin-notice.png"), full_page=True)

                # The audit log is one click away and shows the send.
                await page.click("nav >> text=审计日志")
                assert "发送通知" in await page.inner_text("table")

                # A phone-sized window: the menu folds behind a button.
                phone = await browser.new_page(viewport={"width": 390, "height": 844}, locale="zh-CN")
                await phone.context.add_cookies(await page.context.cookies())
                await phone.goto(svc.url + "/admin")
                assert await phone.is_visible("label.menu-button")
                assert not await phone.is_visible("nav.nav")
                # A long unbroken word (a reason, a name) made a merchant's page wider than the phone.
                from bot.validation import credit_code_check_char

                word = "W" * 90
                await svc.runtime.merchants.save_profile("o-wide", {
                    "entity_type": "enterprise", "entity_name": word + "有限公司", "contact_name": "王五",
                    "phone": "13812345678", "credit_code": "91450100MA5K00000" + credit_code_check_char("91450100MA5K00000")})
                await svc.runtime.merchants.set_status("o-wide", "suspended", "=HYPERLINK(" + word + ")", by="test")
                await phone.goto(svc.url + "/admin/merchants/o-wide")
                assert await phone.evaluate("document.documentElement.scrollWidth") <= 390
                # 管理员: a card a row (the 创建 column was a character wide, the buttons off-screen).
                await phone.goto(svc.url + "/admin/users")
                for label in ("修改", "注销会话", "重设密码"):
                    box = await phone.locator(f"table button:has-text('{label}')").first.bounding_box()
                    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (label, box)
                created = await phone.locator("table td[data-label=创建]").first.bounding_box()
                assert created is not None and created["width"] > 200, created
                assert not offsite, offsite
            finally:
                await browser.close()
    finally:
        stop.set()
        await worker

    texts = [m["body"]["text"]["content"] for m in await emulator.messages() if m["msgtype"] == "text"]
    assert len(texts) == RECIPIENTS and all(t.startswith("【服务公告】系统维护通知") for t in texts)
    for name in ("admin-dashboard.png", "admin-notice.png"):
        assert (tmp_path / name).stat().st_size > 10_000
        if os.environ.get("WETOOP_UPDATE_SCREENSHOTS") == "1":  # the README's pictures
            shutil.copy(tmp_path / name, SCREENSHOTS / name)


async def test_the_console_works_without_javascript(make_service, emulator, tmp_path):
    """Plain forms: log in, send, pause and resume with scripts off; the
    progress page refreshes itself (``<noscript>`` meta refresh)."""
    async_playwright, expect = _browser_or_skip()
    svc = await make_service(data_dir=tmp_path / "data", notice_rate=5)
    await svc.runtime.admins.create("boss", "owner", PASSWORD, by=CLI)
    for n in range(10):
        await svc.runtime.followers.subscribed(f"o-nojs-{n}", svc.runtime.clock())
    stop = asyncio.Event()
    worker = None
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
            try:
                context = await browser.new_context(java_script_enabled=False, locale="zh-CN")
                page = await context.new_page()
                await page.goto(svc.url + "/admin/notices/new")
                await page.fill("input[name=name]", "boss")
                await page.fill("input[name=password]", PASSWORD)
                await page.click("button[type=submit]")
                await page.wait_for_url(svc.url + "/admin/notices/new")
                await page.fill("input[name=title]", "无脚本通知")
                await page.fill("textarea[name=body]", "不用脚本也能发送。")
                await page.click("#send")  # no confirm() without scripts: the form just submits
                await page.wait_for_url("**/admin/notices/*")
                await page.click("form[action$=pause] button")
                await expect(page.locator("[data-field=status_label]")).to_have_text("已暂停")
                worker = asyncio.create_task(svc.runtime.worker(concurrency=2).run(stop))
                await page.click("form[action$=resume] button")
                await expect(page.locator("[data-field=percent]")).to_have_text("100", timeout=30_000)
                assert await page.inner_text("[data-field=sent]") == "10"
            finally:
                await browser.close()
    finally:
        stop.set()
        if worker is not None:
            await worker
    assert len(await emulator.messages()) == 10
