"""MongoDB access through PyMongo's asyncio API (``AsyncMongoClient``).

Server selection gives up after 2 s: with the database down, a chat reply
must still come within WeChat's 5 seconds (chat also sets one time budget per
message, see :mod:`bot.conversation`, which also bounds connection attempts). The socket timeout is generous, since
admin and broadcast work (planning 100,000 deliveries) takes longer.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import functools
import logging
from typing import Awaitable, Callable, Coroutine, Iterable, Protocol, TypeVar

import pymongo
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, ExecutionTimeout, OperationFailure, PyMongoError, WriteError, WTimeoutError
from pymongo.topology_description import TOPOLOGY_TYPE
from pymongo.uri_parser import parse_uri

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "wetoop"

#: Documents per query in :func:`read_all`.
PAGE = 5000

#: Errors that mean "the database could not be reached or did not answer"
#: (not logic errors such as a duplicate key).
MongoUnavailable = (ConnectionFailure, ExecutionTimeout, WTimeoutError)


class StorageFull(ConnectionFailure):
    """The database answered but cannot write: its disk is full (nx-27017's
    SQLite "database or disk is full", MongoDB's OutOfDiskSpace). For the
    product, as unavailable as a database that is down: a follow is kept for
    later and the user told their answer was not saved, not "system error"."""


#: MongoDB's OutOfDiskSpace, and the words of a full disk in other servers' messages.
_DISK_FULL_CODE = 14031
_DISK_FULL_WORDS = ("disk is full", "no space left on device", "out of disk space")


def _disk_full(exc: PyMongoError) -> bool:
    if isinstance(exc, OperationFailure) and exc.code == _DISK_FULL_CODE:
        return True
    return any(words in str(exc).lower() for words in _DISK_FULL_WORDS)


def _writes(method):
    """A collection's write method, a full disk's error raised as :class:`StorageFull`."""

    @functools.wraps(method)
    async def write(self, *args, **kwargs):
        try:
            return await method(self, *args, **kwargs)
        except (OperationFailure, WriteError) as exc:
            if _disk_full(exc):
                raise StorageFull(brief(exc)) from exc
            raise

    return write


class _Collection(AsyncCollection):
    """PyMongo's collection, whose writes say a full disk as :class:`StorageFull`."""

    for _name in ("insert_one", "insert_many", "update_one", "update_many", "replace_one", "delete_one", "delete_many",
                  "find_one_and_update", "find_one_and_replace", "find_one_and_delete", "bulk_write"):
        locals()[_name] = _writes(getattr(AsyncCollection, _name))
    del _name


class _Database(AsyncDatabase):
    """PyMongo's database, handing out :class:`_Collection`."""

    def __getitem__(self, name: str) -> AsyncCollection:
        return _Collection(self, name)

    def get_collection(self, name: str, codec_options=None, read_preference=None, write_concern=None,
                       read_concern=None) -> AsyncCollection:
        return _Collection(self, name, False, codec_options, read_preference, write_concern, read_concern)


class HasIndexes(Protocol):
    """A repository that declares the indexes it needs."""

    async def ensure_indexes(self) -> None: ...


def connect(uri: str, database: str | None = None) -> tuple[AsyncMongoClient, AsyncDatabase]:
    """A client for ``uri`` and the database it names (``wetoop`` if none).

    No I/O happens here; the driver connects on first use.
    """
    query = uri.partition("?")[2].lower()
    # Majority-acknowledged unless the URI says otherwise: a consent recorded on
    # the primary alone is lost in a failover after the user was told "recorded"
    # (MongoDB's default is w:1 before 5.0, and with an arbiter).
    durability = {} if any(part.startswith("w=") for part in query.split("&")) else {"w": "majority"}
    client: AsyncMongoClient = AsyncMongoClient(
        uri,
        **durability,
        tz_aware=True,
        serverSelectionTimeoutMS=2000,
        # Also the driver's heartbeat timeout: nx-27017 answers no heartbeat
        # while it runs a long query (reading 100,000 documents takes
        # seconds), and a missed heartbeat makes the driver cancel every
        # operation in flight. Chat's own time budget still bounds each message.
        connectTimeoutMS=10000,
        socketTimeoutMS=30000,
        appname="wetoop-bot",
    )
    if database is None:
        database = _database_in_uri(uri) or DEFAULT_DATABASE
    return client, _Database(client, database)


def _database_in_uri(uri: str) -> str | None:
    if uri.startswith("mongodb+srv://"):
        path = uri.split("/", 3)[3] if uri.count("/") >= 3 else ""
        return path.split("?", 1)[0] or None
    return parse_uri(uri).get("database")


def brief(exc: Exception) -> str:
    """pymongo's message without the topology description it appends (a
    screenful, for logs and the CLI's one-line errors)."""
    return str(exc).split(", Timeout:")[0].split(", Topology Description:")[0].splitlines()[0][:300]


def epoch_ms(at: dt.datetime) -> int:
    """``at`` as epoch milliseconds: how times compared in queries are stored
    (nx-27017 keeps a datetime set on an existing document as text, which
    would not compare), and how claims in Redis carry them."""
    return int(at.timestamp() * 1000)


#: How many documents a range in :func:`find_in` may hold per value sought
#: before it gives way to ``$in``.
SPREAD = 4
#: Values sought by one query at most: a query is a document, bound like any
#: other by MongoDB's 16 MB (600,000 openids in one ``$in`` were refused).
IN_MAX = 10_000


async def find_in(coll, key: str, values: list[str], projection: dict | None = None) -> list[dict]:
    """The documents whose ``key`` (an indexed field) is one of ``values``.

    The same as ``find({key: {"$in": values}})``, which real MongoDB answers
    from the index; nx-27017 answers ``$in`` on any field but ``_id`` by
    scanning the whole collection (about 140 ms at 100,000 followers, per
    broadcast batch). A range on the field uses its index there too, so this
    reads the range from the least to the greatest value and keeps the values
    sought: exact for a broadcast's batches (consecutive openids of a sorted
    audience); values spread across a range holding more than :data:`SPREAD`
    documents each fall back to ``$in``. More than :data:`IN_MAX` values are
    sought :data:`IN_MAX` at a time.
    """
    wanted = set(values)
    if len(wanted) > IN_MAX:
        ordered = sorted(wanted)
        return [d for start in range(0, len(ordered), IN_MAX)
                for d in await find_in(coll, key, ordered[start : start + IN_MAX], projection)]
    if not wanted:
        return []
    if projection is not None:
        projection = {**projection, key: 1}  # needed to keep only the values sought
    limit = SPREAD * len(wanted)
    docs = await coll.find({key: {"$gte": min(wanted), "$lte": max(wanted)}}, projection).limit(limit + 1).to_list(None)
    if len(docs) > limit:
        docs = await coll.find({key: {"$in": sorted(wanted)}}, projection).to_list(None)
    return [d for d in docs if d.get(key) in wanted]


async def read_all(coll, query: dict, projection: dict, key: str) -> list[dict]:
    """Every document matching ``query``, in ``key`` order, a page of :data:`PAGE` per query.

    For reads that may return a whole collection (an audience of 100,000).
    nx-27017 builds a query's whole result before its first reply and answers
    nothing else meanwhile, the driver's heartbeat included: one query for
    100,000 documents took 5 s, longer than the heartbeat's timeout
    (``connectTimeoutMS``), and the driver then dropped its connections and
    cancelled every operation in flight. A page takes about half a second.
    ``key`` must be indexed and unique among the documents ``query`` matches.
    """
    if key in query:
        raise ValueError(f"read_all pages on {key!r}; the query must not filter on it")
    docs: list[dict] = []
    while True:
        page_query = query if not docs else {**query, key: {"$gt": docs[-1][key]}}
        page = await coll.find(page_query, projection).sort(key, 1).limit(PAGE).to_list(None)
        docs += page
        if len(page) < PAGE:
            return docs


T = TypeVar("T")


async def in_one_transaction(db: AsyncDatabase, work: Callable[[AsyncClientSession | None], Awaitable[T]]) -> T:
    """``work(session)`` in one transaction where the deployment has them (a
    replica set, a sharded cluster), else ``work(None)``: for writes of many
    documents at once (a broadcast's delivery records, the question log).

    Why: one transaction costs the server less than a commit per document.
    A single server gets none: a standalone MongoDB refuses them, and
    nx-27017 (the embedded default, which presents itself as one) runs every
    client's writes on one SQLite connection, so that another request's
    write made while a transaction was open was rolled back with it (a
    consent recorded beside a batch that failed was lost).

    A transaction that fails for its documents (a duplicate key aborts the
    whole of it, where an unordered write outside one keeps the others) or
    transiently wrote nothing, so ``work`` then runs again outside one: it
    must be safe to repeat after an aborted attempt. Errors of an unreachable
    server are raised as they come (:data:`MongoUnavailable`).
    """
    if not transactions_refused(db):
        try:
            async with db.client.start_session() as session:
                async with await session.start_transaction():
                    return await work(session)
        except MongoUnavailable:
            raise  # some are OperationFailures too (timeouts)
        except OperationFailure:
            pass  # aborted: run again outside one
    return await work(None)


#: Deployments with transactions; ``Single`` (a standalone server, nx-27017)
#: and ``Unknown`` (not yet discovered) get none.
_WITH_TRANSACTIONS = (TOPOLOGY_TYPE.ReplicaSetWithPrimary, TOPOLOGY_TYPE.Sharded, TOPOLOGY_TYPE.LoadBalanced)


def transactions_refused(db: AsyncDatabase) -> bool:
    """Whether writes to ``db`` go without transactions (a single server)."""
    return db.client.topology_description.topology_type not in _WITH_TRANSACTIONS


def detached(work: Coroutine, *, name: str | None = None, budget: float | None = None) -> asyncio.Task:
    """``work`` in a task of its own, outside the time budget of the request
    or message that began it: ``pymongo.timeout`` lives in context variables,
    which a task copies, so a broadcast's planning begun by a console request
    stopped when the request's 30 s were up. ``budget``: the work's own, if any."""

    async def run():
        if budget is None:
            return await work
        with pymongo.timeout(budget):
            return await work

    return asyncio.create_task(run(), name=name, context=contextvars.Context())


async def ping(db: AsyncDatabase) -> bool:
    """True when the server takes a write (one document of its own): one
    that answers but cannot write (a full disk) serves the product no better
    than one that is down."""
    try:
        await db["health"].update_one({"_id": "probe"}, {"$set": {"at": dt.datetime.now(dt.timezone.utc)}}, upsert=True)
        return True
    except PyMongoError as exc:
        log.warning("MongoDB ping failed: %s", brief(exc))  # not pymongo's screenful of topology
        return False


async def ensure_indexes(repositories: Iterable[HasIndexes]) -> None:
    """Create every repository's indexes (idempotent)."""
    for repository in repositories:
        await repository.ensure_indexes()


def as_bool(value: object) -> bool:
    """Read a stored flag: real MongoDB returns booleans, nx-27017 1/0 after ``$set``."""
    return bool(value)


def as_datetime(value: object) -> dt.datetime | None:
    """Read a stored time as an aware UTC datetime.

    Real MongoDB returns datetimes; nx-27017 returns a datetime written by
    ``$set`` on an existing document as text (``2026-11-25 22:54:48.132000``).
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise TypeError(f"not a stored time: {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def filter_query(equals: dict, since: dt.datetime | None = None, until: dt.datetime | None = None, field: str = "at") -> dict:
    """A find filter: ``equals`` (empty values left out) and the half-open time
    range ``since <= field < until`` (either end optional)."""
    query: dict = {name: exactly(value) for name, value in equals.items() if value}
    if since or until:
        query[field] = {}
        if since:
            query[field]["$gte"] = since
        if until:
            query[field]["$lt"] = until
    return query


#: A string no stored field holds, listed beside the value :func:`exactly` matches.
_NEVER_STORED = "\x00"


def exactly(value: object) -> object:
    """A filter value matching ``value`` itself: ``{"$in": [value, "\\x00"]}``
    for a string. The same on MongoDB; nx-27017 reads a string that starts
    like a date ("2026-11-27-nf", a version id) as a date, in an equality and
    in an ``$in`` whose values all look like dates, and finds nothing (SQLite's
    ``datetime()`` of it is null). A value that is no date keeps the list
    compared as the strings it holds."""
    return {"$in": [value, _NEVER_STORED]} if isinstance(value, str) else value
