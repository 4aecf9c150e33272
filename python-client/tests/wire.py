"""Flight SQL commands encoded by hand: pyarrow.flight speaks Flight, not Flight SQL, and the
pinned test environment has no protobuf runtime. Only the few fields the tests use."""

import struct

import pyarrow as pa
import pyarrow.flight as flight

SQL = "type.googleapis.com/arrow.flight.protocol.sql."


def varint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return out + bytes([n])


def field(num: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, bytes, messages)."""
    return varint((num << 3) | 2) + varint(len(payload)) + payload


def int_field(num: int, value: int) -> bytes:
    return varint(num << 3) + varint(value)


def any_of(name: str, body: bytes) -> bytes:
    return field(1, (SQL + name).encode()) + field(2, body)


def statement_query(sql: str, transaction_id: bytes = b"") -> bytes:
    body = field(1, sql.encode())
    if transaction_id:
        body += field(2, transaction_id)
    return any_of("CommandStatementQuery", body)


def primary_keys(table: str, db_schema: str) -> bytes:
    return any_of("CommandGetPrimaryKeys", field(2, db_schema.encode()) + field(3, table.encode()))


def exported_keys(table: str) -> bytes:
    return any_of("CommandGetExportedKeys", field(3, table.encode()))


def xdbc_type_info() -> bytes:
    return any_of("CommandGetXdbcTypeInfo", b"")


def parse(buf: bytes) -> dict:
    """Decodes one protobuf message into {field number: [values]} (varints and bytes)."""
    out: dict = {}
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 2:
            n, i = _read_varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire == 1:
            value, i = struct.unpack("<q", buf[i:i + 8])[0], i + 8
        else:
            raise ValueError(f"wire type {wire}")
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


def run(conn, sql, params=None) -> pa.Table:
    """Runs one statement on an ADBC DB-API connection and answers its Arrow result."""
    cur = conn.cursor()
    cur.execute(sql, params)
    table = cur.fetch_arrow_table()
    cur.close()
    return table


class RawClient:
    """A pyarrow.flight client signed in as root."""

    def __init__(self, url: str):
        self.client = flight.FlightClient(url)
        header = self.client.authenticate_basic_token(b"root", b"")
        self.options = flight.FlightCallOptions(headers=[header])

    def info(self, command: bytes) -> flight.FlightInfo:
        return self.client.get_flight_info(flight.FlightDescriptor.for_command(command), self.options)

    def fetch(self, command: bytes) -> tuple[pa.Schema, pa.Table]:
        info = self.info(command)
        table = self.client.do_get(info.endpoints[0].ticket, self.options).read_all()
        return info.schema, table

    def action(self, kind: str, body: bytes = b"") -> list[bytes]:
        return [r.body.to_pybytes() for r in self.client.do_action(flight.Action(kind, body), self.options)]
