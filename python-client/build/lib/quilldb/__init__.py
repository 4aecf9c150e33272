"""QuillDB's Python client: SQL, bulk ingest, transactions and live subscriptions over Arrow
Flight SQL, with results as pyarrow Tables (or Polars / pandas frames).

    import quilldb
    db = quilldb.connect("grpc://127.0.0.1:50051", user="root", password="")
    db.execute("INSERT INTO app.t (id, v) VALUES ($1, $2)", [1, "x"])
    table = db.query("SELECT * FROM app.t WHERE id = $1", [1])
    with db.subscribe("SUBSCRIBE TO app.t", last_rows=10) as sub:
        for event in sub:
            print(event.kind, event.batch)

`quilldb.aio` has the same API for asyncio.
"""

from .client import Connection, Transaction, adbc_connect, connect
from .errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    Error,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    SubscriptionError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from .live import Event, Subscription

__version__ = "0.1.0"

__all__ = [
    "Aborted", "AlreadyExists", "Cancelled", "Connection", "DeadlineExceeded", "Error", "Event",
    "FailedPrecondition", "Internal", "InvalidArgument", "NotFound", "PermissionDenied",
    "ResourceExhausted", "Subscription", "SubscriptionError", "Transaction", "Unauthenticated",
    "Unavailable", "Unimplemented", "adbc_connect", "connect", "__version__",
]
