"""Whole-collection reads go a page at a time and still return everything once."""

from __future__ import annotations

import pytest

from storage import mongo


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setattr(mongo, "PAGE", 3)  # so a handful of records spans several pages


async def test_audiences_read_in_pages_are_complete(make_service, small_pages):
    svc = await make_service()
    rt = svc.runtime
    now = rt.clock()
    followers = [f"o-page{i:02d}" for i in range(10)]
    for openid in reversed(followers):
        await rt.followers.subscribed(openid, now)
    await rt.followers.unsubscribed("o-page04", now)
    assert await rt.followers.subscribed_openids() == [o for o in followers if o != "o-page04"]

    notice_id = await rt.notices.create(
        category="service", title="分页", body="正文", important=False,
        audience={"type": "all"}, channel="auto", created_at=now, created_by="test",
    )
    await rt.deliveries.create_pending(notice_id, followers, now)
    await rt.deliveries.finish_many(notice_id, {"o-page07": {"status": "sent"}}, now)
    pending = await rt.deliveries.openids(notice_id, ("pending",))
    assert pending == [o for o in followers if o != "o-page07"]


async def test_a_page_key_in_the_query_is_refused(make_service):
    svc = await make_service()
    with pytest.raises(ValueError):
        await mongo.read_all(svc.runtime.db["followers"], {"openid": "x"}, {"openid": 1}, "openid")
