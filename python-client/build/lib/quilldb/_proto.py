"""The few protobuf messages of Flight SQL (FlightSql.proto) and of QuillDB's subscriptions
(subscription.proto, shipped beside this file) that the client sends and reads.

pyarrow.flight speaks Flight, not Flight SQL: its commands are opaque bytes. These messages are
small and stable, so they are encoded here on the protobuf wire format directly rather than
through generated code and a protobuf runtime.
"""

from __future__ import annotations

import struct
from typing import Dict, List, Optional, Union

_SQL = "type.googleapis.com/arrow.flight.protocol.sql."

Value = Union[int, bytes]


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _bytes(num: int, payload: bytes) -> bytes:
    return _varint((num << 3) | 2) + _varint(len(payload)) + payload


def _int(num: int, value: int) -> bytes:
    return _varint(num << 3) + _varint(value)


def _opt_bytes(num: int, payload: Optional[bytes]) -> bytes:
    return _bytes(num, payload) if payload else b""


def parse(buf: bytes) -> Dict[int, List[Value]]:
    """Decodes one message into {field number: [values]}: varints as ints, the rest as bytes."""
    out: Dict[int, List[Value]] = {}
    i, end = 0, len(buf)
    while i < end:
        key, i = _read_varint(buf, i)
        num, wire = key >> 3, key & 7
        value: Value
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 2:
            n, i = _read_varint(buf, i)
            value, i = bytes(buf[i:i + n]), i + n
        elif wire == 1:
            value, i = struct.unpack_from("<q", buf, i)[0], i + 8
        elif wire == 5:
            value, i = struct.unpack_from("<i", buf, i)[0], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.setdefault(num, []).append(value)
    return out


def _read_varint(buf: bytes, i: int):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _one(fields: Dict[int, List[Value]], num: int, default: Value) -> Value:
    values = fields.get(num)
    return values[-1] if values else default


def any_of(name: str, body: bytes) -> bytes:
    """`google.protobuf.Any` wrapping the Flight SQL message `name`."""
    return _bytes(1, (_SQL + name).encode()) + _bytes(2, body)


def unwrap_any(buf: bytes) -> bytes:
    return bytes(_one(parse(buf), 2, b""))  # type: ignore[arg-type]


def statement_query(sql: str, transaction_id: Optional[bytes] = None) -> bytes:
    return any_of("CommandStatementQuery", _bytes(1, sql.encode()) + _opt_bytes(2, transaction_id))


def statement_update(sql: str, transaction_id: Optional[bytes] = None) -> bytes:
    return any_of("CommandStatementUpdate", _bytes(1, sql.encode()) + _opt_bytes(2, transaction_id))


def prepared_query(handle: bytes) -> bytes:
    return any_of("CommandPreparedStatementQuery", _bytes(1, handle))


def prepared_update(handle: bytes) -> bytes:
    return any_of("CommandPreparedStatementUpdate", _bytes(1, handle))


def create_prepared(sql: str, transaction_id: Optional[bytes] = None) -> bytes:
    return any_of(
        "ActionCreatePreparedStatementRequest", _bytes(1, sql.encode()) + _opt_bytes(2, transaction_id)
    )


def close_prepared(handle: bytes) -> bytes:
    return any_of("ActionClosePreparedStatementRequest", _bytes(1, handle))


def begin_transaction() -> bytes:
    return any_of("ActionBeginTransactionRequest", b"")


COMMIT, ROLLBACK = 1, 2


def end_transaction(transaction_id: bytes, action: int) -> bytes:
    return any_of("ActionEndTransactionRequest", _bytes(1, transaction_id) + _int(2, action))


# TableDefinitionOptions of CommandStatementIngest.
INGEST_MODES = {
    # mode: (if the table does not exist, if it exists)
    "append": (2, 2),  # FAIL, APPEND
    "create": (1, 1),  # CREATE, FAIL
    "create_append": (1, 2),  # CREATE, APPEND
    "replace": (1, 3),  # CREATE, REPLACE
}


def statement_ingest(
    table: str, schema: Optional[str], mode: str, transaction_id: Optional[bytes] = None
) -> bytes:
    if_not_exist, if_exists = INGEST_MODES[mode]
    options = _int(1, if_not_exist) + _int(2, if_exists)
    body = _bytes(1, options) + _bytes(2, table.encode())
    if schema:
        body += _bytes(3, schema.encode())
    body += _opt_bytes(6, transaction_id)
    return any_of("CommandStatementIngest", body)


def prepared_result(any_body: bytes):
    """ActionCreatePreparedStatementResult: (handle, dataset schema IPC, parameter schema IPC)."""
    f = parse(unwrap_any(any_body))
    return bytes(_one(f, 1, b"")), bytes(_one(f, 2, b"")), bytes(_one(f, 3, b""))  # type: ignore[arg-type]


def transaction_result(any_body: bytes) -> bytes:
    return bytes(_one(parse(unwrap_any(any_body)), 1, b""))  # type: ignore[arg-type]


def update_count(buf: bytes) -> int:
    """DoPutUpdateResult.record_count (sent bare, not in an Any)."""
    return _signed(int(_one(parse(buf), 1, 0)))


def bound_handle(buf: bytes) -> Optional[bytes]:
    """DoPutPreparedStatementResult.prepared_statement_handle, when the server sends a new one."""
    handle = _one(parse(buf), 1, b"")
    return bytes(handle) if handle else None  # type: ignore[arg-type]


EVENT_KINDS = ("ack", "initial", "initial_done", "change", "closed", "error", "heartbeat")


def subscription_event(buf: bytes):
    """SubscriptionEvent: (kind, subscription_id, last_seq, code, message)."""
    f = parse(buf)
    kind = int(_one(f, 1, 0))
    return (
        EVENT_KINDS[kind] if kind < len(EVENT_KINDS) else f"unknown({kind})",
        bytes(_one(f, 2, b"")).decode(),  # type: ignore[arg-type]
        _signed(int(_one(f, 3, 0))),
        bytes(_one(f, 4, b"")).decode(),  # type: ignore[arg-type]
        bytes(_one(f, 5, b"")).decode(),  # type: ignore[arg-type]
    )
