"""The synchronous client: a `Connection` over pyarrow.flight speaking Flight SQL to QuillDB."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import pyarrow as pa
import pyarrow.flight as flight

from . import _proto, errors
from .live import Subscription

if TYPE_CHECKING:  # pragma: no cover
    import polars

DEFAULT_URL = "grpc://127.0.0.1:50051"

#: Ingest sends batches of at most this many bytes: well below the 16 MiB a gRPC peer accepts by
#: default, and large enough that the per-message cost does not show.
INGEST_CHUNK_BYTES = 8 << 20

#: How many prepared statements a connection keeps open (least recently used are closed).
PREPARED_CACHE_SIZE = 256

Params = Optional[Sequence[Any]]
ArrowData = Union[pa.Table, pa.RecordBatch, pa.RecordBatchReader]


def _call(fn, *args):
    """Runs one pyarrow.flight call, answering QuillDB's error for a failed one."""
    try:
        return fn(*args)
    except (flight.FlightError, pa.ArrowException) as e:
        raise errors.from_flight(e) from None


class _Prepared:
    """A prepared statement the server holds for this connection. Parameters travel with each
    call that runs it, never bound to the handle, so threads can share it."""

    __slots__ = ("handle", "dataset_schema", "param_schema")

    def __init__(self, handle: bytes, dataset_schema: Optional[pa.Schema], param_schema: pa.Schema):
        self.handle = handle
        self.dataset_schema = dataset_schema
        self.param_schema = param_schema


def _schema(ipc: bytes) -> Optional[pa.Schema]:
    return pa.ipc.read_schema(pa.py_buffer(ipc)) if ipc else None


def _no_views(schema: pa.Schema) -> pa.Schema:
    """The schema with view types replaced by their plain forms: QuillDB takes no view types on
    the wire, and Polars exports strings as `string_view`."""
    plain = {pa.string_view(): pa.large_string(), pa.binary_view(): pa.large_binary()}
    fields = [f.with_type(plain.get(f.type, f.type)) for f in schema]
    return pa.schema(fields, metadata=schema.metadata)


def _as_reader(data: Any) -> pa.RecordBatchReader:
    """Arrow, Polars or pandas data as a RecordBatchReader."""
    if isinstance(data, pa.RecordBatchReader):
        return data
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    elif not isinstance(data, pa.Table):
        if hasattr(data, "to_arrow"):  # polars.DataFrame
            data = data.to_arrow()
        elif hasattr(data, "__arrow_c_stream__") and not hasattr(data, "to_records"):
            return pa.RecordBatchReader.from_stream(data)
        elif hasattr(data, "to_records"):  # pandas.DataFrame
            data = pa.Table.from_pandas(data, preserve_index=False)
        else:
            raise TypeError(f"cannot ingest {type(data).__name__}: give Arrow, Polars or pandas data")
    return data.to_reader()


def _chunks(reader: pa.RecordBatchReader, schema: pa.Schema, limit: int) -> Iterator[pa.RecordBatch]:
    """The reader's batches cast to `schema` and sliced to at most `limit` bytes each."""
    for batch in reader:
        if batch.schema != schema:
            batch = batch.cast(schema)
        rows = batch.num_rows
        if rows == 0:
            continue
        size = batch.nbytes
        if size <= limit:
            yield batch
            continue
        step = max(1, rows * limit // size)
        for start in range(0, rows, step):
            yield batch.slice(start, step)


def _param_batch(param_schema: pa.Schema, rows: Union[Sequence[Sequence[Any]], ArrowData]) -> pa.RecordBatch:
    """The parameter batch of `rows` (tuples, or Arrow data with one column per parameter)."""
    if isinstance(rows, (pa.Table, pa.RecordBatch)):
        cols = rows.columns
        width = len(cols)
        if len(param_schema) and width != len(param_schema):
            raise errors.InvalidArgument(
                f"the statement has {len(param_schema)} parameters, the data {width} columns"
            )
        names = param_schema.names if len(param_schema) else [str(i + 1) for i in range(width)]
        arrays = []
        for i, col in enumerate(cols):
            if isinstance(col, pa.ChunkedArray):
                col = col.combine_chunks()
            if len(param_schema) and col.type != param_schema.field(i).type:
                col = col.cast(param_schema.field(i).type)
            arrays.append(col)
        return pa.RecordBatch.from_arrays(arrays, names=names)
    width = len(param_schema)
    if width == 0 and rows:
        width = len(rows[0])
    columns: List[List[Any]] = [[] for _ in range(width)]
    for n, row in enumerate(rows):
        if len(row) != width:
            raise errors.InvalidArgument(
                f"row {n + 1} has {len(row)} values, the statement has {width} parameters"
            )
        for i, v in enumerate(row):
            columns[i].append(v)
    arrays = []
    for i, values in enumerate(columns):
        kind = param_schema.field(i).type if len(param_schema) else None
        try:
            arrays.append(pa.array(values, type=kind))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
            raise errors.InvalidArgument(f"parameter ${i + 1}: {e}") from None
    names = param_schema.names if len(param_schema) else [str(i + 1) for i in range(width)]
    return pa.RecordBatch.from_arrays(arrays, names=names)


class _Session:
    """What a statement runs with: the connection, and the transaction if inside one."""

    def __init__(self, conn: "Connection", transaction_id: Optional[bytes]):
        self._conn = conn
        self._txid = transaction_id
        self._prepared: "OrderedDict[str, _Prepared]" = OrderedDict()
        self._cache_lock = threading.Lock()

    # -- statements ----------------------------------------------------------------------------

    def query(self, sql: str, params: Params = None) -> pa.Table:
        """Runs a query and answers its rows as a pyarrow.Table (with its schema when empty)."""
        if params is None:
            return self._conn._exchange(_proto.statement_query(sql, self._txid), None)
        prepared = self._prepare(sql)
        batch = _param_batch(prepared.param_schema, [tuple(params)])
        return self._conn._exchange(_proto.prepared_query(prepared.handle), batch)

    def query_polars(self, sql: str, params: Params = None) -> "polars.DataFrame":
        """Runs a query and answers a polars.DataFrame (needs the `polars` extra)."""
        import polars

        return polars.from_arrow(self.query(sql, params))  # type: ignore[return-value]

    def query_pandas(self, sql: str, params: Params = None):
        """Runs a query and answers a pandas.DataFrame (needs the `pandas` extra)."""
        return self.query(sql, params).to_pandas()

    def execute(self, sql: str, params: Params = None) -> int:
        """Runs a statement that writes or changes the schema; answers the rows affected."""
        if params is None:
            return self._conn._put_update(_proto.statement_update(sql, self._txid), pa.schema([]), [])
        return self.execute_many(sql, [tuple(params)])

    def execute_many(self, sql: str, rows: Union[Sequence[Sequence[Any]], ArrowData]) -> int:
        """Runs a statement once per parameter row, all rows in one call and atomically; answers
        the total of rows affected. `rows` is a list of tuples or Arrow data (a column per `$n`)."""
        prepared = self._prepare(sql)
        if isinstance(rows, pa.RecordBatchReader):
            rows = rows.read_all()
        batch = _param_batch(prepared.param_schema, rows)
        return self._conn._put_update(_proto.prepared_update(prepared.handle), batch.schema, [batch])

    def ingest(self, table: str, data: Any, mode: str = "append") -> int:
        """Bulk-loads Arrow, Polars or pandas data into `ns.table` in one atomic call, sent in
        messages below the gRPC message limit; answers the rows written. `mode` is `append`."""
        if mode not in _proto.INGEST_MODES:
            raise errors.InvalidArgument(f"ingest mode must be one of {sorted(_proto.INGEST_MODES)}")
        ns, _, name = table.rpartition(".")
        reader = _as_reader(data)
        schema = _no_views(reader.schema)
        command = _proto.statement_ingest(name, ns or None, mode, self._txid)
        return self._conn._put_update(command, schema, _chunks(reader, schema, INGEST_CHUNK_BYTES))

    def prepare(self, sql: str) -> Tuple[Optional[pa.Schema], pa.Schema]:
        """Prepares `sql` (once per text on this connection); answers (result schema, parameter
        schema)."""
        p = self._prepare(sql)
        return p.dataset_schema, p.param_schema

    # -- prepared statements -------------------------------------------------------------------

    def _prepare(self, sql: str) -> _Prepared:
        with self._cache_lock:
            found = self._prepared.get(sql)
            if found is not None:
                self._prepared.move_to_end(sql)
                return found
        body = self._conn._action("CreatePreparedStatement", _proto.create_prepared(sql, self._txid))
        handle, dataset, params = _proto.prepared_result(body)
        prepared = _Prepared(handle, _schema(dataset), _schema(params) or pa.schema([]))
        evicted = []
        with self._cache_lock:
            won = self._prepared.get(sql)
            if won is not None:  # another thread prepared the same text meanwhile
                evicted.append(prepared)
                prepared = won
            else:
                self._prepared[sql] = prepared
            while len(self._prepared) > PREPARED_CACHE_SIZE:
                evicted.append(self._prepared.popitem(last=False)[1])
        for old in evicted:
            self._close_prepared(old)
        return prepared

    def _close_prepared(self, prepared: _Prepared) -> None:
        try:
            self._conn._action("ClosePreparedStatement", _proto.close_prepared(prepared.handle))
        except errors.Error:
            pass  # the server frees it with the session anyway

    def _close_all_prepared(self) -> None:
        with self._cache_lock:
            items = list(self._prepared.values())
            self._prepared.clear()
        for p in items:
            self._close_prepared(p)


class Transaction(_Session):
    """A transaction: statements run through it see its own writes and commit together. Used as
    a context manager, it commits on a clean exit and rolls back on an exception."""

    def __init__(self, conn: "Connection"):
        txid = _proto.transaction_result(conn._action("BeginTransaction", _proto.begin_transaction()))
        super().__init__(conn, txid)
        self.transaction_id = txid
        self._done = False

    def commit(self) -> None:
        """Commits; raises `Aborted` when another writer changed the same rows first."""
        self._end(_proto.COMMIT)

    def rollback(self) -> None:
        """Discards every write of the transaction."""
        self._end(_proto.ROLLBACK)

    def _end(self, action: int) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._conn._action("EndTransaction", _proto.end_transaction(self.transaction_id, action))
        finally:
            self._close_all_prepared()

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.commit()
        else:
            self.rollback()


class Connection(_Session):
    """A connection to QuillDB. Thread-safe: calls from several threads share its channel."""

    def __init__(
        self,
        url: Optional[str] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        *,
        tls_root_certs: Optional[bytes] = None,
        cert_chain: Optional[bytes] = None,
        private_key: Optional[bytes] = None,
        timeout: Optional[float] = None,
    ):
        self.url = url or os.environ.get("QUILLDB_URL") or DEFAULT_URL
        self.user = user if user is not None else os.environ.get("QUILLDB_USER", "root")
        self._password = password if password is not None else os.environ.get("QUILLDB_PASSWORD", "")
        self._tls_root_certs = tls_root_certs
        self._client_cert = (cert_chain, private_key)
        self._timeout = timeout
        self._closed = False
        self._client = self._new_client()
        self._options = self._login(self._client)
        super().__init__(self, None)

    # -- connection ----------------------------------------------------------------------------

    def _new_client(self) -> flight.FlightClient:
        kwargs = {}
        if self._tls_root_certs is not None:
            kwargs["tls_root_certs"] = self._tls_root_certs
        cert_chain, private_key = self._client_cert
        if cert_chain is not None and private_key is not None:
            kwargs["cert_chain"] = cert_chain
            kwargs["private_key"] = private_key
        try:
            return flight.FlightClient(self.url, **kwargs)
        except (flight.FlightError, pa.ArrowException) as e:
            raise errors.from_flight(e) from None

    def _login(self, client: flight.FlightClient) -> flight.FlightCallOptions:
        try:
            header = client.authenticate_basic_token(self.user.encode(), self._password.encode())
        except flight.FlightInternalError as e:
            # A connection that fails (an untrusted certificate, say) ends the login stream
            # with "Could not finish writing before closing"; a plain call tells why.
            _call(lambda: list(client.list_actions()))
            raise errors.from_flight(e) from None
        except (flight.FlightError, pa.ArrowException) as e:
            raise errors.from_flight(e) from None
        return flight.FlightCallOptions(headers=[header], timeout=self._timeout)

    def close(self) -> None:
        """Closes the prepared statements and the channel."""
        if self._closed:
            return
        self._closed = True
        self._close_all_prepared()
        self._client.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- API beyond statements -----------------------------------------------------------------

    def transaction(self) -> Transaction:
        """Begins a transaction (`with db.transaction() as tx: tx.execute(...)`)."""
        return Transaction(self)

    def subscribe(
        self,
        sql: str,
        params: Params = None,
        *,
        last_rows: Optional[int] = None,
        from_seq: Optional[int] = None,
        batch_size: Optional[int] = None,
        all_users: Optional[bool] = None,
        auto_resume: bool = True,
        resume_timeout: float = 30.0,
    ) -> Subscription:
        """Opens a live query (`SUBSCRIBE TO ...`); iterate it for its events."""
        options = {"last_rows": last_rows, "from": from_seq, "batch_size": batch_size, "all_users": all_users}
        return Subscription(
            self._open_exchange,
            sql,
            params,
            {k: v for k, v in options.items() if v is not None},
            auto_resume=auto_resume,
            resume_timeout=resume_timeout,
        )

    def flush(self, table: str, wait: bool = True, timeout: float = 300.0) -> str:
        """Flushes a table's hot rows to Parquet (`STORAGE FLUSH TABLE`); answers the job id and,
        with `wait`, returns once the job has finished (raising its error if it failed)."""
        job_id = self.query(f"STORAGE FLUSH TABLE {table}").column(0)[0].as_py()
        if wait:
            self.wait_job(job_id, timeout)
        return job_id

    def wait_job(self, job_id: str, timeout: float = 300.0) -> str:
        """Waits for a job of system.jobs to end; answers its status (`completed`, `skipped`...)."""
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            rows = self.query("SELECT status, message FROM system.jobs WHERE job_id = $1", [job_id])
            if rows.num_rows:
                status, message = rows.column(0)[0].as_py(), rows.column(1)[0].as_py()
                if status == "failed":
                    raise errors.Error(f"job {job_id} failed: {message}", "INTERNAL")
                if status not in ("queued", "running"):
                    return status
            if time.monotonic() > deadline:
                raise errors.DeadlineExceeded(f"job {job_id} did not finish within {timeout} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    # -- transport -----------------------------------------------------------------------------

    def _open_exchange(self, command: bytes, fresh: bool):
        """Opens a DoExchange (on a new channel after a drop when `fresh`)."""
        if fresh:
            client = self._new_client()
            options = self._login(client)
        else:
            client, options = self._client, self._options
        writer, reader = _call(client.do_exchange, flight.FlightDescriptor.for_command(command), options)
        return client, writer, reader

    def _action(self, kind: str, body: bytes) -> bytes:
        results = _call(lambda: list(self._client.do_action(flight.Action(kind, body), self._options)))
        return results[0].body.to_pybytes() if results else b""

    def _put(self, descriptor: flight.FlightDescriptor, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> bytes:
        def run() -> bytes:
            writer, meta = self._client.do_put(descriptor, schema, self._options)
            try:
                for b in batches:
                    writer.write_batch(b)
                writer.done_writing()
                reply = meta.read()
            finally:
                writer.close()
            return reply.to_pybytes() if reply is not None else b""

        return _call(run)

    def _put_update(self, command: bytes, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
        return _proto.update_count(self._put(flight.FlightDescriptor.for_command(command), schema, batches))

    def _exchange(self, command: bytes, params: Optional[pa.RecordBatch]) -> pa.Table:
        """Runs a query command in one call: QuillDB answers a DoExchange whose descriptor is a
        Flight SQL query command (and whose data is its parameter batch) with the result, where
        Flight SQL alone needs DoPut, GetFlightInfo and DoGet."""

        def run() -> pa.Table:
            writer, reader = self._client.do_exchange(flight.FlightDescriptor.for_command(command), self._options)
            try:
                if params is not None:
                    writer.begin(params.schema)
                    writer.write_batch(params)
                writer.done_writing()
                return reader.read_all()
            finally:
                writer.close()

        return _call(run)


def connect(
    url: Optional[str] = None,
    user: Optional[str] = None,
    password: Optional[str] = None,
    **kwargs: Any,
) -> Connection:
    """Connects to QuillDB. Defaults come from QUILLDB_URL, QUILLDB_USER and QUILLDB_PASSWORD,
    then `grpc://127.0.0.1:50051` as root with the empty password (accepted from loopback)."""
    return Connection(url, user, password, **kwargs)


def adbc_connect(
    url: Optional[str] = None,
    user: Optional[str] = None,
    password: Optional[str] = None,
    autocommit: bool = True,
    **db_kwargs: str,
):
    """An ADBC DB-API connection to QuillDB through the Flight SQL driver (the `adbc` extra), for
    tools that want one."""
    import adbc_driver_flightsql.dbapi as flight_sql

    url = url or os.environ.get("QUILLDB_URL") or DEFAULT_URL
    kwargs = {
        "username": user if user is not None else os.environ.get("QUILLDB_USER", "root"),
        "password": password if password is not None else os.environ.get("QUILLDB_PASSWORD", ""),
    }
    kwargs.update(db_kwargs)
    return flight_sql.connect(url, db_kwargs=kwargs, autocommit=autocommit)
