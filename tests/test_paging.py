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
    other_id = await rt.notices.create(
        category="service", title="另一条", body="正文", important=False,
        audience={"type": "all"}, channel="auto", created_at=now, created_by="test",
    )
    for nid in (notice_id, other_id):  # the same recipients in two notices: pages keep to one
        await rt.deliveries.create_pending(nid, followers, now)
    await rt.deliveries.finish_many(notice_id, {"o-page07": {"status": "sent"}}, now)
    await rt.deliveries.finish_many(other_id, {"o-page02": {"status": "sent"}}, now)
    pending = await rt.deliveries.openids(notice_id, ("pending",))
    assert pending == [o for o in followers if o != "o-page07"]


async def test_a_page_key_in_the_query_is_refused(make_service):
    svc = await make_service()
    with pytest.raises(ValueError):
        await mongo.read_all(svc.runtime.db["followers"], {"openid": "x"}, {"openid": 1}, "openid")


async def test_find_in_reads_a_range_of_the_index_or_falls_back_to_in(make_service):
    svc = await make_service()
    rt = svc.runtime
    openids = [f"o-in{i:02d}" for i in range(20)]
    for openid in openids:
        await rt.followers.subscribed(openid, rt.clock())

    async def found(values: list[str]) -> list[str]:
        return sorted(d["openid"] for d in await mongo.find_in(rt.db["followers"], "openid", values, {"openid": 1}))

    assert await found(openids[5:9]) == openids[5:9]  # consecutive: exactly the range
    assert await found([openids[0], openids[2], "o-in02x"]) == [openids[0], openids[2]]  # the range holds o-in01 too
    assert await found([openids[0], openids[19], "o-missing"]) == [openids[0], openids[19]]  # too spread: $in
    assert await found([]) == []
    kept = await mongo.find_in(rt.db["followers"], "openid", [openids[0], openids[2]], {"_id": 1})
    assert len(kept) == 2  # the key is read even when the projection leaves it out
    assert sorted(await rt.followers.many(openids[3:6])) == openids[3:6]


async def test_the_cli_merchant_list_has_every_merchant(make_service, small_pages):
    # `merchants list` stopped at 1,000 rows without a word; the console keeps its bound.
    svc = await make_service()
    repo = svc.runtime.merchants.repo
    for i in range(7):
        await svc.runtime.merchants.save_profile(
            f"o-list{i}", {"entity_type": "individual", "entity_name": "张三", "contact_name": "张三", "phone": "13812345678"}
        )
    assert [m.openid for m in await repo.list(limit=None)] == [f"o-list{i}" for i in range(7)]
    assert len(await repo.list("pending_review", limit=None)) == 7
    assert len(await repo.list(limit=5)) == 5



async def test_an_openid_list_larger_than_a_document_is_kept_and_sought_in_parts(make_service):
    # 600,000 openids were one 24 MB notice document and one $in: MongoDB's 16 MB
    # limit refused both, and `notice send --audience openids:FILE` ended in a traceback.
    svc = await make_service()
    rt = svc.runtime
    listed = [f"o{i:027d}" for i in range(600_000)]
    await rt.followers.subscribed(listed[123_456], rt.clock())
    assert await rt.mini.identities.known(listed) == set()
    assert set(await rt.followers.many(listed)) == {listed[123_456]}
    notice_id = await rt.notices.create(
        category="service", title="名单", body="正文", important=False,
        audience={"type": "openids", "openids": list(reversed(listed))}, channel="auto",
        created_at=rt.clock(), created_by="test",
    )
    notice = await rt.notices.get(notice_id)
    assert notice.audience == {"type": "openids", "count": 600_000, "first": listed[:20]}
    assert await rt.notices.listed(notice) == listed


async def test_a_listed_notice_is_planned_from_its_parts(make_service, monkeypatch):
    from storage import notices

    monkeypatch.setattr(notices, "LIST_CHUNK", 3)
    monkeypatch.setattr(mongo, "IN_MAX", 2)
    svc = await make_service()
    rt = svc.runtime
    listed = [f"o-part{i}" for i in range(8)]
    for openid in listed:
        await rt.followers.subscribed(openid, rt.clock())
    assert sorted(await rt.followers.many(listed + ["o-nobody"])) == listed
    notice_id = await rt.broadcasts.send(
        category="service", title="分批", body="正文", important=False,
        audience={"type": "openids", "openids": listed + listed[:2]}, by="test",
    )
    assert sorted(await rt.deliveries.openids(notice_id, ("pending",))) == listed
    assert (await rt.notices.get(notice_id)).total == 8
