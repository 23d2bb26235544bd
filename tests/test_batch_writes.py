"""Writes of many documents at once go in one transaction where the database
has them, and lose nothing when one of their documents is refused."""

from __future__ import annotations

import asyncio

import pytest
from pymongo.errors import BulkWriteError

from storage import deliveries, mongo


async def test_a_write_that_fails_inside_the_transaction_leaves_nothing_and_runs_again_outside(make_service):
    db = (await make_service()).runtime.db
    coll = db["batch_test"]
    await coll.insert_one({"_id": "taken"})
    sessions = []

    async def work(session):
        sessions.append(session)
        try:
            result = await coll.insert_many([{"_id": "a"}, {"_id": "taken"}, {"_id": "b"}], ordered=False, session=session)
            return len(result.inserted_ids)
        except BulkWriteError as exc:
            if session is not None:
                raise
            return exc.details["nInserted"]

    assert await mongo.in_one_transaction(db, work) == 2
    if mongo.transactions_refused(db):  # a standalone MongoDB: one attempt, outside a transaction
        assert sessions == [None]
    else:
        assert sessions[0] is not None and sessions[1:] == [None]
    assert sorted(d["_id"] for d in await coll.find().to_list(None)) == ["a", "b", "taken"]


async def test_a_write_inside_the_transaction_is_all_or_nothing(make_service):
    db = (await make_service()).runtime.db
    if mongo.transactions_refused(db):
        pytest.skip("this MongoDB has no transactions (standalone)")
    coll = db["batch_test"]
    attempts = []

    async def work(session):
        attempts.append(session)
        await coll.insert_one({"_id": "first"}, session=session)
        if session is not None:
            # What the aborted attempt wrote is gone before the plain run starts.
            await coll.insert_one({"_id": "first"}, session=session)  # duplicate: aborts the transaction
        return await coll.count_documents({})

    assert await mongo.in_one_transaction(db, work) == 1
    assert len(attempts) == 2


async def test_recipients_recorded_again_keep_their_outcome_and_only_new_ones_count(make_service):
    rt = (await make_service()).runtime
    at = rt.clock()
    assert await rt.deliveries.create_pending("n-again", ["o-1", "o-2"], at) == 2
    await rt.deliveries.finish_many("n-again", {"o-1": {"status": "sent", "channel": "custom"}}, at)
    # Planning again after a crash: the chunk holds recorded recipients and new ones.
    assert await rt.deliveries.create_pending("n-again", ["o-1", "o-2", "o-3"], at) == 1
    assert await rt.deliveries.openids("n-again", ("sent",)) == ["o-1"]
    assert await rt.deliveries.openids("n-again", ("pending",)) == ["o-2", "o-3"]


async def test_an_audience_larger_than_one_write_is_recorded_whole(make_service):
    rt = (await make_service()).runtime
    at = rt.clock()
    openids = [f"o-{i:04d}" for i in range(deliveries.PENDING_PER_WRITE * 2 + 7)]
    # Some of the second write's share already recorded (a planner that died midway).
    second = deliveries.PENDING_PER_WRITE + 100
    assert await rt.deliveries.create_pending("n-large", openids[second:second + 10], at) == 10
    assert await rt.deliveries.create_pending("n-large", openids, at) == len(openids) - 10
    assert await rt.deliveries.openids("n-large", ("pending",)) == openids


async def test_a_write_beside_a_batch_that_fails_is_kept(make_service):
    """Another request's write made while a batch is being written survives the
    batch's failure. (nx-27017 runs every client's writes on one SQLite
    connection: inside its transaction, a rollback took the other write with it.)"""
    db = (await make_service()).runtime.db
    coll, beside = db["batch_test"], db["beside_test"]
    await coll.insert_one({"_id": "taken"})
    begun, written = asyncio.Event(), asyncio.Event()

    async def work(session):
        await coll.insert_one({"_id": f"first-{session is not None}"}, session=session)
        begun.set()
        await written.wait()
        try:
            result = await coll.insert_many([{"_id": "taken"}, {"_id": "b"}], ordered=False, session=session)
            return len(result.inserted_ids)
        except BulkWriteError as exc:
            if session is not None:
                raise
            return exc.details["nInserted"]

    async def consent():
        await begun.wait()
        await beside.insert_one({"_id": "a consent"})
        written.set()

    assert (await asyncio.gather(mongo.in_one_transaction(db, work), consent()))[0] == 1
    assert await beside.find_one({"_id": "a consent"}) is not None


async def test_questions_written_already_by_a_write_that_timed_out_are_no_error(make_service):
    # A flush timed out on a frozen server, which applied it on waking; the retry met
    # its own ids: "Task exception was never retrieved", and the rest waited.
    rt = (await make_service()).runtime
    log = rt.qa_log
    await log.flush()
    for question in ("第一个问题", "第二个问题"):
        log.record(question=question, kind="abstain", refs=(), score=0.0, version="2022-05-22",
                   openid="o-twice", channel="official_account", at=rt.clock())
    await rt.db["qa_log"].insert_one(dict(log._pending[0]))  # the first, applied by the timed-out write
    await log.flush()
    assert sorted(q["question"] for q in await log.export("o-twice")) == ["第一个问题", "第二个问题"]
