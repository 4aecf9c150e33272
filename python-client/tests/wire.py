"""Flight SQL commands encoded by hand for tests that drive pyarrow.flight directly: pyarrow
speaks Flight, not Flight SQL, and the test environment has no protobuf runtime. Only the few
fields the tests use."""

import pyarrow as pa
import pyarrow.flight as flight

from quilldb import _proto

# The protobuf wire codec is the client package's (quilldb._proto); the commands below are
# built field by field so the tests can send what the package never does.
varint = _proto._varint
field = _proto._bytes
int_field = _proto._int
parse = _proto.parse
any_of = _proto.any_of
statement_query = _proto.statement_query


def primary_keys(table: str, db_schema: str) -> bytes:
    return any_of("CommandGetPrimaryKeys", field(2, db_schema.encode()) + field(3, table.encode()))


def exported_keys(table: str) -> bytes:
    return any_of("CommandGetExportedKeys", field(3, table.encode()))


def xdbc_type_info() -> bytes:
    return any_of("CommandGetXdbcTypeInfo", b"")


def sql_info(*ids: int) -> bytes:
    """CommandGetSqlInfo; no ids asks for every value."""
    return any_of("CommandGetSqlInfo", b"".join(int_field(1, i) for i in ids))


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
