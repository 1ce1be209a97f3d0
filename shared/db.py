"""Database engines for Piccolo: persistent SQLite connections, or a PostgreSQL pool.

Piccolo's stock SQLiteEngine opens a new connection (and thread) for every query. `SQLiteEngine`
here keeps two connections open for the life of the process: one for reads outside transactions
(WAL lets it read while another connection writes) and one for writes and transactions, serialised
by an asyncio lock. A busy timeout covers writers in other processes. A third connection serves
`RowByKey`, the services' one-row lookups, on the event loop's own thread; on PostgreSQL it sends the
lookups of one loop turn as one statement (see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import aiosqlite
import asyncpg
import structlog
from aiodataloader import DataLoader
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine as _PiccoloPostgresEngine
from piccolo.engine.postgres import PostgresTransaction
from piccolo.engine.sqlite import SQLiteEngine as _PiccoloSQLiteEngine
from piccolo.engine.sqlite import SQLiteTransaction, TransactionType, dict_factory
from piccolo.table import Table

log = structlog.get_logger()

BUSY_TIMEOUT_MS = 10_000
CLOSE_TIMEOUT = 5.0  # seconds a PostgreSQL pool gets to close at shutdown
_READ_PREFIXES = ("SELECT", "WITH", "PRAGMA", "EXPLAIN")


class _EndsOnce:
    """The one `__aexit__` of both engines' transactions: commit or roll back, then, whatever that
    raised, unset the task's current transaction and `_release()` what `__aenter__` took (the SQLite
    write lock, the PostgreSQL connection). Piccolo's own releases nothing when its rollback raises
    (see `_SafePostgresTransaction`). A nested transaction leaves all of it to its parent."""

    if TYPE_CHECKING:  # what Piccolo's transaction classes, which these classes extend, provide
        _parent: Any
        _committed: bool
        _rolled_back: bool
        context: Any
        engine: Any

        async def commit(self) -> None: ...
        async def rollback(self) -> None: ...

    async def _release(self) -> None:
        raise NotImplementedError

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self._parent:
            return exception is None
        try:
            if exception:
                if not self._rolled_back:
                    await self.rollback()
            elif not self._committed and not self._rolled_back:
                await self.commit()
        finally:
            self.engine.current_transaction.reset(self.context)
            await self._release()
        return exception is None


class _WriterTransaction(_EndsOnce, SQLiteTransaction):
    """A transaction on the engine's single writer connection, holding the write lock throughout."""

    engine: SQLiteEngine
    _parent: SQLiteTransaction | None

    async def __aenter__(self) -> SQLiteTransaction:
        if self._parent is not None:
            return self._parent
        await self.engine.write_lock.acquire()
        try:
            return await super().__aenter__()
        except BaseException:
            self.engine.write_lock.release()
            raise

    async def get_connection(self) -> aiosqlite.Connection:
        return await self.engine.writer()

    async def _release(self) -> None:
        self.engine.write_lock.release()


class SQLiteEngine(_PiccoloSQLiteEngine):
    """Piccolo's SQLite engine on two persistent connections (reader + serialised writer), WAL mode."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(path=path, timeout=BUSY_TIMEOUT_MS / 1000, **kwargs)
        self._reader: aiosqlite.Connection | None = None
        self._writer: aiosqlite.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._open_lock: asyncio.Lock | None = None
        self.write_lock = asyncio.Lock()

    async def _open(self) -> aiosqlite.Connection:
        pending = aiosqlite.connect(**self.connection_kwargs)
        # A process that never closes the engine (the piccolo CLI running migrations) must still
        # exit: the connection's worker thread must not hold the interpreter open.
        pending._thread.daemon = True
        conn = await pending
        conn.row_factory = dict_factory  # type: ignore[assignment]
        for pragma in (
            "PRAGMA journal_mode = WAL",
            f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
            "PRAGMA synchronous = NORMAL",
            "PRAGMA foreign_keys = 1",
        ):
            await conn.execute(pragma)
        return conn

    async def reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            self._open_lock = self._open_lock or asyncio.Lock()
            async with self._open_lock:
                if self._reader is None:
                    self._reader = await self._open()
        return self._reader

    async def writer(self) -> aiosqlite.Connection:
        if self._writer is None:
            self._writer = await self._open()
        return self._writer

    async def start(self) -> None:
        await self.reader()
        await self.writer()
        # Never waits for a lock (busy timeout 0) and never writes: see `read_inline`.
        inline = sqlite3.connect(**{**self.connection_kwargs, "timeout": 0}, check_same_thread=False)
        inline.row_factory = dict_factory
        inline.execute("PRAGMA query_only = 1")
        self._inline = inline

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        if self._inline is not None:
            self._inline.close()
        self._reader = self._writer = self._inline = None

    async def read_inline(self, query: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        """The rows of a short read (one row by its key), run on the calling thread: no hop to a
        connection's thread and back, which costs ~30-60 µs of CPU against ~5 µs for the lookup
        itself (bench/FINDINGS.md). Only for statements that touch a handful of rows: the event
        loop runs nothing else meanwhile. In WAL mode a reader waits for no writer; SQLite's busy
        result, which needs another connection in exclusive locking mode or recovering the file
        after a crash before this one opened, is an outage like any other (503, `database_unavailable`)."""
        if self._inline is None:  # not started (the Piccolo CLI): the reader's thread
            conn = await self.reader()
            return [dict(row) for row in await conn.execute_fetchall(query, args)]
        return self._inline.execute(query, args).fetchall()

    async def _run_in_new_connection(
        self,
        query: str,
        args: list[Any] | None = None,
        query_type: str = "generic",
        table: Any = None,
    ) -> list[dict[str, Any]]:
        args = args or []
        if query.lstrip()[:7].upper().startswith(_READ_PREFIXES):
            conn = await self.reader()
            # One call on the connection's thread: a statement left open between `execute` and
            # `fetchall` while other queries run would pin one old read snapshot for all of them.
            return [dict(row) for row in await conn.execute_fetchall(query, args)]
        async with self.write_lock:
            conn = await self.writer()
            async with conn.execute(query, args) as cursor:
                return [dict(row) for row in await cursor.fetchall()]

    def transaction(
        self,
        transaction_type: TransactionType = TransactionType.immediate,
        allow_nested: bool = True,
    ) -> SQLiteTransaction:
        return _WriterTransaction(engine=self, transaction_type=transaction_type, allow_nested=allow_nested)


class _SafePostgresTransaction(_EndsOnce, PostgresTransaction):
    """Piccolo's PostgreSQL transaction, but one that always gives its connection back and unsets itself.

    Piccolo 1.x's `__aexit__` runs the rollback (or commit) and only then releases the connection and
    resets `current_transaction`: when the rollback raises, because the server dropped the connection
    (`pg_terminate_backend`, a restart, a network cut), neither happens. The task that ran it then keeps
    the dead transaction as its current one, so every later `transaction()` in that task nests in
    it and every query fails ("connection has been released back to the pool") until the process
    restarts, and a leaked pool slot is lost. Likewise a `BEGIN` that fails leaks the connection it
    acquired. Here both steps run in `finally`, and a connection that failed to release is terminated.
    """

    _parent: PostgresTransaction | None

    async def __aenter__(self) -> PostgresTransaction:
        if self._parent is not None:
            return self._parent
        self.connection = await self.get_connection()
        try:
            self.transaction = self.connection.transaction()
            await self.begin()
        except BaseException:
            await self._release()
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def _release(self) -> None:
        try:
            if self.engine.pool:
                # asyncpg rolls back a connection still in a transaction on release, and drops (and
                # replaces) one that is closed.
                await self.engine.pool.release(self.connection)
            else:
                await self.connection.close()
        except Exception as exc:  # the pool already terminated it; nothing is left to clean
            log.warning("db_connection_release_failed", error=repr(exc))
            self.connection.terminate()


class PostgresEngine(_PiccoloPostgresEngine):
    """Piccolo's PostgreSQL engine with `_SafePostgresTransaction`."""

    def transaction(self, allow_nested: bool = True) -> PostgresTransaction:
        return _SafePostgresTransaction(engine=self, allow_nested=allow_nested)


class RowByKey:
    """`SELECT <columns> FROM <table> WHERE <key> = <value>`: one row by a unique key, or None.

    The services' hottest reads (a session's validation, a canvas read its cache missed) run this
    statement, built once for each engine, straight on the engine's connections: Piccolo's query
    builder costs more CPU than the lookup (bench/FINDINGS.md). On SQLite it runs on the event loop's
    thread (`SQLiteEngine.read_inline`). On PostgreSQL the lookups asked for in one turn of the event
    loop go to the server as one statement, `WHERE <key> = ANY($1)`, on one pooled connection
    (aiodataloader's `DataLoader`, without its cache: every lookup reads the database): a pooled
    query costs ~50 µs of CPU in this process whatever it reads (the pool's acquire and shielded
    release, the round trip's wake-ups), so 16 lookups at once cost ~10 µs each instead
    (bench/FINDINGS.md). A lookup alone pays one loop turn more. The statement is sent again when a
    pooled connection turns out dropped by the server, at most once per pooled connection. Inside a
    transaction the lookup runs in that transaction, through Piccolo, so it sees what it wrote.
    """

    def __init__(self, table: type[Table], key: Any, columns: Sequence[Any] | None = None) -> None:
        columns = list(columns or table._meta.columns)
        if not any(column is key for column in columns):  # `in` would use Piccolo's `==`
            raise ValueError("the key must be one of the columns read (it matches rows to lookups)")
        names = ", ".join(column._meta.db_column_name for column in columns)
        head = f"SELECT {names} FROM {table._meta.tablename} WHERE {key._meta.db_column_name} = "  # noqa: S608 - names from the table
        self.table = table
        self._sqlite, self._postgres, self._piccolo = head + "?", head + "ANY($1)", head + "{}"
        self._key = key._meta.db_column_name
        # The pool the lookups are batched for and their loader (loading a row, None, or an error).
        self._batching: tuple[asyncpg.Pool, DataLoader[Any, Any]] | None = None

    async def __call__(self, value: Any) -> dict[str, Any] | None:
        engine = self.table._meta.db
        if engine.current_transaction.get() is None:
            if isinstance(engine, SQLiteEngine):
                rows = await engine.read_inline(self._sqlite, (value,))
                return rows[0] if rows else None
            pool = engine.pool if isinstance(engine, PostgresEngine) else None
            if pool is not None:
                if self._batching is None or self._batching[0] is not pool:  # a pool is one loop's
                    self._batching = (pool, DataLoader(functools.partial(self._many, pool), cache=False))
                row: dict[str, Any] | None = await self._batching[1].load(value)
                return row
        found = await self.table.raw(self._piccolo, value).run()
        return found[0] if found else None

    async def _many(self, pool: asyncpg.Pool, keys: list[Any]) -> list[dict[str, Any] | BaseException | None]:
        """The row of each key, in the keys' order (aiodataloader's batch function). Should the
        statement fail for a reason other than an outage (a key the column's type refuses), each
        key is read alone, so that only its own lookup fails."""
        unique = list(dict.fromkeys(keys))
        try:
            rows = await self._fetch(pool, unique)
        except Exception as exc:
            if len(unique) == 1 or database_unavailable(exc):
                raise
            alone: dict[Any, Any] = {}
            for key in unique:
                try:
                    alone[key] = next(iter(await self._fetch(pool, [key])), None)
                except Exception as error:  # the lookup of this key fails with it
                    alone[key] = error
            return [_as_row(alone[key]) for key in keys]
        found = {row[self._key]: row for row in rows}
        return [_as_row(found.get(key)) for key in keys]

    async def _fetch(self, pool: asyncpg.Pool, keys: list[Any]) -> list[asyncpg.Record]:
        # A pooled connection the server dropped (a restart, `pg_terminate_backend`), while it sat
        # idle or under this statement, fails the statement, and the pool replaces it. The statement
        # only reads, so it is sent again, at most once per pooled connection.
        for _ in range(pool.get_max_size()):
            try:
                rows: list[asyncpg.Record] = await pool.fetch(self._postgres, keys)
            except Exception as exc:
                if not dropped_while_idle(exc):
                    raise
            else:
                return rows
        return list(await pool.fetch(self._postgres, keys))


def _as_row(found: Any) -> Any:
    """A row as a dict of its own (each lookup may change what it gets), or None, or an error."""
    return dict(found) if isinstance(found, asyncpg.Record) else found


# The database did not answer or dropped the connection: a transient outage (503), not a bug (500).
# OSError covers refused and reset connections and timeouts (TimeoutError is one); a deadlock or
# serialization victim is worth the client's retry too. asyncpg's DataError, an InterfaceError, is
# not one: it is a query argument the driver could not encode (a bug, 500; `database_unavailable`).
DB_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)
# SQLite's own result codes (the low byte of an extended code): busy or locked past the busy timeout,
# an I/O error, the file unopenable.
_SQLITE_TRANSIENT = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN}
)
# A pooled connection the server dropped while it sat idle (`pg_terminate_backend`, a shutdown):
# asyncpg reads the server's FATAL error, waits in its error-consume state (2) for a ReadyForQuery
# that never comes, and until it notices the closed socket, a query handed that connection fails
# with an InternalClientError instead of a connection error. It is the same outage: 503.
_DROPPED_BY_SERVER = re.compile(r"another operation \(2\) is in progress")


def dropped_while_idle(exc: BaseException) -> bool:
    """Whether a query failed because its pooled connection had been dropped by the server."""
    return isinstance(exc, asyncpg.ConnectionDoesNotExistError) or (
        isinstance(exc, asyncpg.InternalClientError) and _DROPPED_BY_SERVER.search(str(exc)) is not None
    )


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from or while handling) is a database outage."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DB_UNAVAILABLE) and not isinstance(current, asyncpg.DataError):
            return True
        code = getattr(current, "sqlite_errorcode", None)
        if (
            isinstance(current, sqlite3.OperationalError)
            and code is not None
            and code & 0xFF in _SQLITE_TRANSIENT
        ):
            return True
        if isinstance(current, asyncpg.exceptions.ObjectNotInPrerequisiteStateError) and (
            "not currently accepting connections" in str(current)  # ALLOW_CONNECTIONS false
        ):
            return True
        if isinstance(current, asyncpg.InternalClientError) and _DROPPED_BY_SERVER.search(str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


def make_engine(url: str) -> Engine[Any]:
    """`sqlite:///path/to/file.db` or `postgresql://user@host:port/db`."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else parsed.path
        return SQLiteEngine(path=path, detect_types=sqlite3.PARSE_DECLTYPES | sqlite3.PARSE_COLNAMES)
    if parsed.scheme in ("postgres", "postgresql"):
        return PostgresEngine(config={"dsn": url})
    raise ValueError(f"unsupported database URL scheme: {parsed.scheme!r}")


async def _keep_session(connection: Any) -> None:
    """The pool's reset on release, beyond what asyncpg always does (roll back an open transaction).

    asyncpg's default sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on
    every release: one more round trip, and ~9 % of the auth service's CPU per session validation on
    PostgreSQL (issue 18, bench/FINDINGS.md). Nothing in this project takes advisory locks, listens,
    keeps a cursor past its transaction or sets a session variable, so there is nothing to undo;
    tests/shared/test_db_postgres.py checks that a released connection runs no reset query and that an
    open transaction is still rolled back."""


async def open_engine(engine: Engine[Any], pool_size: int = 10) -> None:
    if isinstance(engine, SQLiteEngine):
        await engine.start()
    elif isinstance(engine, PostgresEngine):
        await engine.start_connection_pool(min_size=1, max_size=pool_size, reset=_keep_session)


async def close_engine(engine: Engine[Any]) -> None:
    if isinstance(engine, SQLiteEngine):
        await engine.close()
    elif isinstance(engine, PostgresEngine) and engine.pool is not None:
        # asyncpg's close waits for every connection to come back: one held by a task stuck on a dead
        # server would hang the shutdown until SIGKILL. Bounded, then the rest are cut.
        try:
            await asyncio.wait_for(engine.pool.close(), CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("db_pool_close_timed_out", seconds=CLOSE_TIMEOUT)
            engine.pool.terminate()
        engine.pool = None


@asynccontextmanager
async def engine_lifespan(engine: Engine[Any], pool_size: int = 10) -> AsyncIterator[None]:
    await open_engine(engine, pool_size)
    try:
        yield
    finally:
        await close_engine(engine)


async def ping(engine: Engine[Any]) -> None:
    """Raise if the database does not answer a trivial query."""
    await engine.run_ddl("SELECT 1")


class MigrationsMissing(RuntimeError):
    """The database answers but lacks migrations: /ready names them."""


def migration_ids(folder: str | Path) -> list[str]:
    # The `ID = "..."` line of each Piccolo migration file. Read, not imported: Piccolo's own
    # loader (BaseMigrationManager.get_migration_modules) puts the folder on sys.path for good.
    ids = []
    for file in sorted(Path(folder).glob("*.py")):
        found = re.search(r'^ID = "([^"]+)"', file.read_text(), re.MULTILINE)
        if found:
            ids.append(found.group(1))
    return ids


def migrations_check(engine: Engine[Any], app_name: str, folder: str | Path) -> Callable[[], Awaitable[None]]:
    """A readiness check: raise MigrationsMissing while Piccolo's `migration` table lacks one of `app_name`'s.

    Once every migration has been seen applied the answer is remembered (they are never unapplied).
    """
    expected = migration_ids(folder)
    applied_all = False

    async def check() -> None:
        nonlocal applied_all
        if applied_all:
            return
        try:
            rows = await engine.run_ddl(f"SELECT name FROM migration WHERE app_name = '{app_name}'")  # noqa: S608 - constant
        except Exception:
            await ping(engine)  # a database that does not answer fails with its own error
            rows = []  # it answers but has no migration table: nothing applied
        missing = [mid for mid in expected if mid not in {row["name"] for row in rows or []}]
        if missing:
            raise MigrationsMissing(
                f"{app_name} database lacks migration {', '.join(missing)} (run `make migrate`)"
            )
        applied_all = True

    return check


@contextmanager
def bind_tables(tables: Sequence[type[Table]], engine: Engine[Any]) -> Iterator[None]:
    """Bind a service's Piccolo tables to `engine` for the block, then restore what they had.

    Piccolo binds a table class to one engine (`Table._meta.db`); a service's tables are declared
    unbound and its app's lifespan binds them to the engine `create_app` built from its settings
    (entry points such as the Piccolo CLI's `piccolo_conf` build theirs from the environment).
    Apps built one after another (or nested, as tests do) each use their own engine; two apps of
    one service serving at the same moment in one process would share the innermost binding.
    """
    previous = [table._meta._db for table in tables]
    for table in tables:
        table._meta.db = engine
    try:
        yield
    finally:
        for table, db in zip(tables, previous, strict=True):
            table._meta._db = db


class TableSet:
    """A service's tables: the engine they are bound to now, a transaction on it, and `bound`."""

    def __init__(self, tables: Sequence[type[Table]]) -> None:
        self.tables = tuple(tables)

    def engine(self) -> Engine[Any]:
        return self.tables[0]._meta.db

    def transaction(self) -> Any:
        """A transaction on the bound engine (`async with db.transaction(): ...`)."""
        return self.engine().transaction()

    def bound(self, engine: Engine[Any]) -> contextlib.AbstractContextManager[None]:
        return bind_tables(self.tables, engine)
