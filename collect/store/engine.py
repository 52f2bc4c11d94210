"""
Engine setup for SQLite (default, embedded) and PostgreSQL (production).

SQLite pragmas are set on every connection: WAL lets readers run beside the one writer,
busy_timeout makes writers wait instead of failing, foreign_keys is off by default in SQLite.
Write transactions on SQLite start with BEGIN IMMEDIATE so two writers never deadlock on the
read-to-write lock upgrade.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from collect.settings import Settings


class DatabaseUnreachable(RuntimeError):
    """The database cannot be reached (exit code 3)."""


def make_engine(url: str, *, synchronous: str = "NORMAL", pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        # hide_parameters: bound values (contacts, keyed hashes) never reach logs or error messages.
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            # Readers (Store.reader) take no write lock; everything else starts as a writer.
            if connection.get_execution_options().get("sqlite_read_only"):
                connection.exec_driver_sql("BEGIN")
            else:
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, hide_parameters=True
    )


# One lock per SQLite file in this process. SQLite admits one writer at a time anyway; queueing
# writers on a lock is far cheaper than SQLite's busy handler, which makes waiters sleep and
# retry (measured: 50 contending threads took ~21 ms per ballot with the busy handler).
_sqlite_write_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _write_lock(url: str) -> threading.Lock:
    with _locks_guard:
        return _sqlite_write_locks.setdefault(url, threading.Lock())


@dataclass
class Store:
    """The database plus the settings that key its hashes; passed to ingest() and the readers."""

    settings: Settings
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = make_engine(self.settings.database_url, synchronous=self.settings.sqlite_synchronous)

    @property
    def url(self) -> str:
        return self.settings.database_url

    @property
    def reader(self) -> Engine:
        """
        For transactions that only read. On SQLite they begin DEFERRED and so run beside the
        writer (WAL) instead of queueing for the write lock; a write through it may fail.
        """
        return self.engine.execution_options(sqlite_read_only=True)

    @property
    def root(self) -> Store:
        """The store itself (inside a caller's transaction: the store that transaction is on)."""
        return self

    def in_transaction(self, connection: Connection) -> Store:
        """This store as seen inside `connection`'s transaction (see StoreInTransaction)."""
        return cast(Store, StoreInTransaction(self, connection))

    def writing(self) -> AbstractContextManager[object]:
        """Hold while writing: serialises this process's writers on SQLite; a no-op on PostgreSQL."""
        if self.settings.is_sqlite:
            return _write_lock(self.settings.database_url)
        return nullcontext()

    def ping(self) -> None:
        try:
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.OperationalError as exc:
            raise DatabaseUnreachable(f"cannot reach the database: {exc.orig}") from exc

    def dispose(self) -> None:
        self.engine.dispose()


class _SavepointEngine:
    """Stands in for `store.engine` inside a caller's transaction: each `begin()` is a savepoint."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self._connection.begin_nested():
            yield self._connection

    def connect(self) -> AbstractContextManager[Connection]:
        return nullcontext(self._connection)


class StoreInTransaction:
    """
    The store as ingest() sees it inside a transaction the caller owns (an import batch, a
    clerk's entry batch): writes become savepoints of that transaction, so the batch and its
    audit entry commit together or not at all, and a dry run can roll everything back.
    `writing()` is a no-op: the caller already holds the (non-reentrant) SQLite writer lock.
    """

    def __init__(self, store: Store, connection: Connection) -> None:
        self._store = store
        self.engine = _SavepointEngine(connection)

    def writing(self) -> AbstractContextManager[object]:
        return nullcontext()

    @property
    def root(self) -> Store:
        return self._store

    @property
    def reader(self) -> _SavepointEngine:
        # Reads inside the caller's transaction see its own uncommitted writes (a redelivery
        # in the same batch must find the first delivery).
        return self.engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
