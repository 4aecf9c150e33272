"""Live queries: `SUBSCRIBE TO ...` over DoExchange, read as `Event`s, resumed after drops."""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight

from . import _proto, errors

#: CLOSED codes after which a subscription is opened again from its last `_seq`.
RESUMABLE = ("lagged", "shutdown")

_OPTIONS = re.compile(r"\s+OPTIONS\s*\((?P<body>[^()]*)\)\s*;?\s*$", re.I | re.S)


class Event:
    """One message of a subscription.

    `kind` is one of "ack", "initial", "initial_done", "change", "heartbeat", "closed", "error";
    `batch` the rows (a pyarrow.RecordBatch with `_seq`, `_op` and, for all_users, `_user_id`)
    or None; `last_seq` the greatest `_seq` delivered so far; `code` and `message` say why a
    subscription closed or failed."""

    __slots__ = ("kind", "batch", "last_seq", "code", "message", "subscription_id")

    def __init__(self, kind: str, batch: Optional[pa.RecordBatch], last_seq: int, code: str,
                 message: str, subscription_id: str):
        self.kind = kind
        self.batch = batch
        self.last_seq = last_seq
        self.code = code
        self.message = message
        self.subscription_id = subscription_id

    def __repr__(self) -> str:
        rows = self.batch.num_rows if self.batch is not None else 0
        extra = f", code={self.code!r}" if self.code else ""
        return f"Event({self.kind}, rows={rows}, last_seq={self.last_seq}{extra})"


def with_options(sql: str, options: Dict[str, Any]) -> str:
    """`sql` with `options` merged into its OPTIONS (...) clause (added when missing)."""
    if not options:
        return sql
    found = _OPTIONS.search(sql)
    merged: Dict[str, str] = {}
    head = sql.rstrip().rstrip(";")
    if found:
        head = sql[: found.start()]
        for part in found.group("body").split(","):
            if "=" in part:
                k, v = part.split("=", 1)
                merged[k.strip().lower()] = v.strip()
    for k, v in options.items():
        merged[k] = ("true" if v else "false") if isinstance(v, bool) else str(int(v))
    return f"{head} OPTIONS ({', '.join(f'{k} = {v}' for k, v in merged.items())})"


def _param_batch(params: Sequence[Any]) -> pa.RecordBatch:
    arrays = []
    for i, v in enumerate(params):
        try:
            arrays.append(pa.array([v]))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise errors.InvalidArgument(f"parameter ${i + 1}: {e}") from None
    return pa.RecordBatch.from_arrays(arrays, names=[str(i + 1) for i in range(len(arrays))])


class Subscription:
    """An open live query. Iterate it for `Event`s; `close()` (or leaving its `with` block) ends
    it. With `auto_resume`, a dropped connection or a CLOSED `lagged` / `shutdown` opens it again
    from the last `_seq` delivered, so every change is yielded exactly once; ERROR events and a
    CLOSED `unauthorized` raise `SubscriptionError`."""

    def __init__(self, open_exchange: Callable, sql: str, params: Optional[Sequence[Any]],
                 options: Dict[str, Any], *, auto_resume: bool, resume_timeout: float):
        self._open_exchange = open_exchange
        self._sql = sql
        self._params = None if params is None else _param_batch(params)
        self._options = options
        self.auto_resume = auto_resume
        self.resume_timeout = resume_timeout
        self.subscription_id = ""
        self.last_seq = int(options.get("from", 0))
        self.resumes = 0
        self._closed = False
        self._ended = False
        self._acked = self._snapshot_done = False
        self._lock = threading.Lock()
        self._reader: Any = None
        self._writer: Any = None
        self._client: Any = None
        self._owns_client = False
        self._open(fresh=False)

    @property
    def schema(self) -> pa.Schema:
        """The schema of the subscription's batches."""
        return self._reader.schema

    def _open(self, fresh: bool) -> None:
        options = dict(self._options)
        if self.last_seq > 0 and (fresh or "from" in options):
            options.pop("last_rows", None)
            options["from"] = self.last_seq
        command = with_options(self._sql, options).encode()
        client, writer, reader = self._open_exchange(command, fresh)
        try:
            if self._params is not None:
                writer.begin(self._params.schema)
                writer.write_batch(self._params)
            reader.schema  # the server answers its schema first, or the subscription's error
        except (flight.FlightError, pa.ArrowException) as e:
            try:
                writer.close()
            except (flight.FlightError, pa.ArrowException):
                pass  # closing repeats the call's own error
            raise errors.from_flight(e) from None
        with self._lock:
            # A resumed subscription has a channel of its own, closed when it is replaced.
            old = self._client if self._owns_client else None
            self._client, self._writer, self._reader = client, writer, reader
            self._owns_client = fresh
        if old is not None:
            old.close()

    def _resume(self, cause: Exception) -> None:
        deadline = time.monotonic() + self.resume_timeout
        pause = 0.05
        while not self._closed:
            try:
                self._open(fresh=True)
                self.resumes += 1
                return
            except errors.Error as e:
                if e.code not in ("UNAVAILABLE", "CANCELLED", "INTERNAL", "UNKNOWN", "UNAUTHENTICATED"):
                    raise
                if time.monotonic() > deadline:
                    raise errors.Unavailable(
                        f"the subscription could not be resumed within {self.resume_timeout} s: {e.message}"
                    ) from cause
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        while True:
            if self._closed or self._ended:
                raise StopIteration
            try:
                chunk = self._reader.read_chunk()
            except StopIteration:
                # The stream ended without CLOSED or ERROR: the connection went away.
                if self._closed or not self.auto_resume:
                    self._ended = True
                    raise
                self._resume(errors.Unavailable("the subscription's stream ended"))
                continue
            except (flight.FlightError, pa.ArrowException) as e:
                if self._closed:
                    raise StopIteration from None
                err = errors.from_flight(e)
                if self.auto_resume and err.code in ("UNAVAILABLE", "INTERNAL", "UNKNOWN"):
                    self._resume(err)
                    continue
                self._ended = True
                raise err from None
            kind, sid, last_seq, code, message = _proto.subscription_event(
                chunk.app_metadata.to_pybytes() if chunk.app_metadata is not None else b""
            )
            batch = chunk.data
            if batch is not None and batch.num_rows and "_seq" in batch.schema.names:
                last_seq = max(last_seq, pc.max(batch.column("_seq")).as_py() or 0)
            if sid:
                self.subscription_id = sid
            if kind in ("closed", "error"):
                if self.auto_resume and kind == "closed" and code in RESUMABLE and not self._closed:
                    self._resume(errors.Unavailable(f"closed {code}: {message}"))
                    continue
                self._ended = True
                if kind == "error" or code == "unauthorized":
                    raise errors.SubscriptionError(message or code, code)
                return Event(kind, None, self.last_seq, code, message, self.subscription_id)
            if kind == "ack":
                if self._acked:
                    continue  # a resumed stream's own ACK
                self._acked = True
            elif kind == "initial_done":
                if self._snapshot_done:
                    continue
                self._snapshot_done = True
            self.last_seq = max(self.last_seq, last_seq)
            return Event(kind, batch if (batch is not None and batch.num_columns) else None,
                         self.last_seq, code, message, self.subscription_id)

    def close(self) -> None:
        """Ends the subscription (the server drops it from system.live_queries)."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            reader, writer = self._reader, self._writer
        try:
            if reader is not None:
                reader.cancel()
            if writer is not None:
                writer.close()
            if self._owns_client and self._client is not None:
                self._client.close()
        except (flight.FlightError, pa.ArrowException):
            pass

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
