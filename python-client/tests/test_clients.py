"""Stock clients against a real server: ADBC, pyarrow.flight, Polars and DuckDB."""

import decimal

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from wire import run
from wire import statement_query as _statement_query


def test_adbc_ddl_dml_and_queries(conn, ns):
    run(conn, f"CREATE TABLE {ns}.msgs (id BIGINT PRIMARY KEY, room TEXT NOT NULL, body TEXT)")
    affected = run(conn, f"INSERT INTO {ns}.msgs (id, room, body) VALUES (1, 'r1', 'hi'), (2, 'r1', 'yo')")
    assert affected.column("rows_affected").to_pylist() == [2]
    run(conn, f"INSERT INTO {ns}.msgs (id, room, body) VALUES ($1, $2, $3)", (3, "r2", "param"))
    t = run(conn, f"SELECT id, room, body FROM {ns}.msgs WHERE room = $1 ORDER BY id", ("r1",))
    assert t.column("id").to_pylist() == [1, 2]
    assert t.schema.field("room").type == pa.string()
    assert not t.schema.field("room").nullable

    star = run(conn, f"SELECT * FROM {ns}.msgs")
    assert star.column_names == ["id", "room", "body", "_seq"]
    assert star.column("id").to_pylist() == [1, 2, 3]  # _seq order without ORDER BY

    upd = run(conn, f"UPDATE {ns}.msgs SET body = 'edited' WHERE id = 1")
    assert upd.column("rows_affected").to_pylist() == [1]
    run(conn, f"DELETE FROM {ns}.msgs WHERE id = 2")
    assert run(conn, f"SELECT body FROM {ns}.msgs ORDER BY id").column("body").to_pylist() == ["edited", "param"]

    empty = run(conn, f"SELECT id, body FROM {ns}.msgs WHERE id = 999")
    assert empty.num_rows == 0
    assert empty.schema.names == ["id", "body"]


def test_adbc_errors_are_clear_and_write_nothing(conn, ns):
    run(conn, f"CREATE TABLE {ns}.k (id BIGINT PRIMARY KEY, v TEXT)")
    run(conn, f"INSERT INTO {ns}.k VALUES (1, 'a')")
    with pytest.raises(Exception) as err:
        run(conn, f"INSERT INTO {ns}.k VALUES (2, 'b'), (1, 'dup')")
    assert "id = 1" in str(err.value)
    assert run(conn, f"SELECT count(*) AS n FROM {ns}.k").column("n").to_pylist() == [1]
    with pytest.raises(Exception) as err:
        run(conn, "SELEC 1")
    assert "Line: 1" in str(err.value)
    # The connection keeps working.
    assert run(conn, "SELECT 1 AS one").column("one").to_pylist() == [1]


def test_types_round_trip_exactly(conn, ns):
    run(conn, f"""CREATE TABLE {ns}.ty (id BIGINT PRIMARY KEY, d DECIMAL(20,4), ts TIMESTAMPTZ,
                  t TIMESTAMP, b BOOLEAN, j JSON, dt DATE)""")
    run(conn, f"""INSERT INTO {ns}.ty VALUES (9223372036854775807, 1234567890123456.7891,
                  '2024-01-02T03:04:05.123456Z', '2024-01-02 03:04:05', true, '{{"a":1}}', '2024-02-29')""")
    t = run(conn, f"SELECT * FROM {ns}.ty")
    row = t.to_pylist()[0]
    assert row["id"] == 9223372036854775807
    assert row["d"] == decimal.Decimal("1234567890123456.7891")
    assert t.schema.field("d").type == pa.decimal128(20, 4)
    assert t.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert t.schema.field("t").type == pa.timestamp("us")
    assert row["ts"].isoformat() == "2024-01-02T03:04:05.123456+00:00"
    assert row["b"] is True and row["j"] == '{"a":1}'


def test_polars_read_database(conn, ns):
    import polars as pl

    run(conn, f"CREATE TABLE {ns}.p (id BIGINT PRIMARY KEY, score DOUBLE)")
    run(conn, f"INSERT INTO {ns}.p VALUES (1, 1.5), (2, 2.5), (3, 4.0)")
    df = pl.read_database(f"SELECT id, score FROM {ns}.p ORDER BY id", connection=conn)
    assert df.shape == (3, 2)
    assert df["score"].sum() == 8.0
    assert df.schema["id"] == pl.Int64


def test_duckdb_over_arrow_results(conn, ns):
    import duckdb

    run(conn, f"CREATE TABLE {ns}.q (id BIGINT PRIMARY KEY, room TEXT, n INT)")
    run(conn, f"INSERT INTO {ns}.q VALUES (1, 'a', 10), (2, 'a', 5), (3, 'b', 7)")
    arrow_table = run(conn, f"SELECT * FROM {ns}.q")
    result = duckdb.sql("SELECT room, sum(n) AS total FROM arrow_table GROUP BY room ORDER BY room").fetchall()
    assert result == [("a", 15), ("b", 7)]


def test_pyarrow_flight(server, conn, ns):
    run(conn, f"CREATE TABLE {ns}.f (id BIGINT PRIMARY KEY, v TEXT)")
    run(conn, f"INSERT INTO {ns}.f VALUES (1, 'one'), (2, 'two')")
    client = flight.FlightClient(server.flight_url)
    header = client.authenticate_basic_token(b"root", b"")
    options = flight.FlightCallOptions(headers=[header])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(_statement_query(f"SELECT * FROM {ns}.f")), options)
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    assert table.schema == info.schema
    assert table.column("v").to_pylist() == ["one", "two"]
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.authenticate_basic_token(b"root", b"wrong")
    bad = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer nope")])
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.get_flight_info(flight.FlightDescriptor.for_command(_statement_query("SELECT 1")), bad)


def test_adbc_qmark_executemany_and_metadata(conn, ns):
    run(conn, f"CREATE TABLE {ns}.m (id BIGINT PRIMARY KEY, v TEXT NOT NULL)")
    cur = conn.cursor()
    cur.executemany(f"INSERT INTO {ns}.m (id, v) VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "c")])
    cur.close()
    t = run(conn, f"SELECT v FROM {ns}.m WHERE id > ? ORDER BY id", (1,))
    assert t.column("v").to_pylist() == ["b", "c"]

    # executemany is atomic: a duplicate in the batch writes none of it.
    cur = conn.cursor()
    with pytest.raises(Exception):
        cur.executemany(f"INSERT INTO {ns}.m (id, v) VALUES (?, ?)", [(4, "d"), (1, "dup")])
    cur.close()
    assert run(conn, f"SELECT count(*) AS n FROM {ns}.m").column("n").to_pylist() == [3]

    schema = conn.adbc_get_table_schema("m", db_schema_filter=ns)
    assert schema.names == ["id", "v", "_seq"]
    assert not schema.field("v").nullable
    objects = conn.adbc_get_objects(depth="tables", db_schema_filter=ns).read_all().to_pylist()
    tables = [t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]]
    assert tables == ["m"]
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "QuillDB"
