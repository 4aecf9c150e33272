"""The asyncio client: the API of `quilldb.connect` with `await` and `async for`.

pyarrow.flight's calls block but release the GIL, so each runs on a worker thread and the event
loop stays free while the server works:

    db = await quilldb.aio.connect()
    table = await db.query("SELECT * FROM app.t WHERE id = $1", [1])
    async with db.subscribe("SUBSCRIBE TO app.t") as sub:
        async for event in sub:
            ...
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Tuple

import pyarrow as pa

from .client import Connection, Params, Transaction, _Session
from .live import Event, Subscription


async def _run(fn, *args, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))


class _AsyncSession:
    def __init__(self, inner: _Session):
        self._inner = inner

    async def query(self, sql: str, params: Params = None) -> pa.Table:
        """Runs a query; answers a pyarrow.Table."""
        return await _run(self._inner.query, sql, params)

    async def query_polars(self, sql: str, params: Params = None):
        """Runs a query; answers a polars.DataFrame."""
        return await _run(self._inner.query_polars, sql, params)

    async def query_pandas(self, sql: str, params: Params = None):
        """Runs a query; answers a pandas.DataFrame."""
        return await _run(self._inner.query_pandas, sql, params)

    async def execute(self, sql: str, params: Params = None) -> int:
        """Runs a statement; answers the rows affected."""
        return await _run(self._inner.execute, sql, params)

    async def execute_many(self, sql: str, rows: Any) -> int:
        """Runs a statement once per parameter row, atomically, in one call."""
        return await _run(self._inner.execute_many, sql, rows)

    async def ingest(self, table: str, data: Any, mode: str = "append") -> int:
        """Bulk-loads Arrow, Polars or pandas data in one atomic call."""
        return await _run(self._inner.ingest, table, data, mode)

    async def prepare(self, sql: str) -> Tuple[Optional[pa.Schema], pa.Schema]:
        """Prepares `sql`; answers (result schema, parameter schema)."""
        return await _run(self._inner.prepare, sql)


class AsyncTransaction(_AsyncSession):
    """A transaction (`async with db.transaction() as tx:`): commits on a clean exit, rolls back
    on an exception."""

    _inner: Transaction

    async def commit(self) -> None:
        await _run(self._inner.commit)

    async def rollback(self) -> None:
        await _run(self._inner.rollback)

    async def __aenter__(self) -> "AsyncTransaction":
        return self

    async def __aexit__(self, kind, value, tb) -> None:
        if kind is None:
            await self.commit()
        else:
            await self.rollback()


class _Begin:
    """What `db.transaction()` answers: awaitable, and usable directly in `async with`."""

    def __init__(self, conn: Connection):
        self._conn = conn
        self._tx: Optional[AsyncTransaction] = None

    def __await__(self):
        return self._begin().__await__()

    async def _begin(self) -> AsyncTransaction:
        return AsyncTransaction(await _run(Transaction, self._conn))

    async def __aenter__(self) -> AsyncTransaction:
        self._tx = await self._begin()
        return self._tx

    async def __aexit__(self, kind, value, tb) -> None:
        assert self._tx is not None  # set by __aenter__
        await self._tx.__aexit__(kind, value, tb)


class AsyncSubscription:
    """A live query read with `async for`; `await close()` (or leaving `async with`) ends it.
    Its reads wait on a thread of its own, so open subscriptions never starve the loop's
    executor that queries run on."""

    def __init__(self, opening: "asyncio.Future[Subscription]"):
        self._opening = opening
        self._sub: Optional[Subscription] = None
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quilldb-live")

    async def _get(self) -> Subscription:
        if self._sub is None:
            self._sub = await self._opening
        return self._sub

    def __aiter__(self) -> "AsyncSubscription":
        return self

    async def __anext__(self) -> Event:
        sub = await self._get()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader, sub.__next__)
        except StopIteration:
            raise StopAsyncIteration from None

    @property
    def subscription_id(self) -> str:
        return self._sub.subscription_id if self._sub else ""

    async def close(self) -> None:
        (await self._get()).close()
        self._reader.shutdown(wait=False)

    async def __aenter__(self) -> "AsyncSubscription":
        await self._get()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class AsyncConnection(_AsyncSession):
    """A connection for asyncio; one channel shared by every call."""

    _inner: Connection

    def transaction(self) -> _Begin:
        """Begins a transaction: `async with db.transaction() as tx:` or `tx = await ...`."""
        return _Begin(self._inner)

    def subscribe(self, sql: str, params: Params = None, **options: Any) -> AsyncSubscription:
        """Opens a live query; the keywords are those of `Connection.subscribe`."""
        opening = asyncio.ensure_future(_run(self._inner.subscribe, sql, params, **options))
        return AsyncSubscription(opening)

    async def flush(self, table: str, wait: bool = True, timeout: float = 300.0) -> str:
        """Flushes a table's hot rows to Parquet; answers the job id."""
        return await _run(self._inner.flush, table, wait, timeout)

    async def wait_job(self, job_id: str, timeout: float = 300.0) -> str:
        """Waits for a job to end; answers its status."""
        return await _run(self._inner.wait_job, job_id, timeout)

    async def close(self) -> None:
        await _run(self._inner.close)

    async def __aenter__(self) -> "AsyncConnection":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


async def connect(
    url: Optional[str] = None,
    user: Optional[str] = None,
    password: Optional[str] = None,
    **kwargs: Any,
) -> AsyncConnection:
    """Connects to QuillDB (the defaults of `quilldb.connect`)."""
    return AsyncConnection(await _run(Connection, url, user, password, **kwargs))


__all__ = ["AsyncConnection", "AsyncSubscription", "AsyncTransaction", "connect"]
