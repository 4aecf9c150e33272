"""Flushed data is indistinguishable from unflushed data for stock clients."""

import decimal
import time

import pyarrow as pa
import pyarrow.flight as flight

from wire import run
from wire import statement_query as _statement_query


def flush(conn, table, ends=("completed",), limit=60):
    """Flushes `table` and waits for the job to end in one of `ends` (`skipped`: the flush
    policy moved every row already)."""
    job = run(conn, f"STORAGE FLUSH TABLE {table}").column("job_id")[0].as_py()
    deadline = time.time() + limit
    while time.time() < deadline:
        status = run(conn, f"SELECT status FROM system.jobs WHERE job_id = '{job}'").column("status")[0].as_py()
        if status not in ("queued", "running"):
            assert status in ends, status
            return
        time.sleep(0.05)
    raise AssertionError(f"flush {job} did not finish")


def test_clients_read_the_same_before_and_after_a_flush(server, conn, ns):
    import duckdb
    import polars as pl

    run(conn, f"""CREATE TABLE {ns}.c (id BIGINT PRIMARY KEY, room TEXT, n INT, d DECIMAL(12,3),
                  ts TIMESTAMPTZ, big BIGINT)""")
    cur = conn.cursor()
    rows = pa.table({
        "id": pa.array(range(5000), pa.int64()),
        "room": pa.array([f"r{i % 7}" for i in range(5000)]),
        "n": pa.array([i % 100 for i in range(5000)], pa.int32()),
        "d": pa.array([decimal.Decimal(i) / 1000 for i in range(5000)], pa.decimal128(12, 3)),
        "ts": pa.array([1_700_000_000_000_000 + i for i in range(5000)], pa.timestamp("us", tz="UTC")),
        "big": pa.array([9223372036854775807 - i for i in range(5000)], pa.int64()),
    })
    cur.adbc_ingest("c", rows, mode="append", db_schema_name=ns)
    cur.close()
    run(conn, f"DELETE FROM {ns}.c WHERE id % 10 = 3")
    queries = [
        f"SELECT * FROM {ns}.c",
        f"SELECT room, count(*) AS c, sum(n) AS s FROM {ns}.c GROUP BY room ORDER BY room",
        f"SELECT * FROM {ns}.c WHERE id = 4242",
        f"SELECT id, d FROM {ns}.c WHERE n BETWEEN 10 AND 12 ORDER BY id LIMIT 5",
    ]
    before = [run(conn, q) for q in queries]
    polars_before = pl.read_database(f"SELECT id, room FROM {ns}.c ORDER BY id", connection=conn)
    flush(conn, f"{ns}.c")
    after = [run(conn, q) for q in queries]
    for q, b, a in zip(queries, before, after):
        assert a.equals(b), q
    assert after[0].num_rows == 4500
    assert after[2].to_pylist()[0]["big"] == 9223372036854775807 - 4242
    polars_after = pl.read_database(f"SELECT id, room FROM {ns}.c ORDER BY id", connection=conn)
    assert polars_after.equals(polars_before)
    arrow_table = after[0]
    assert duckdb.sql("SELECT count(*) FROM arrow_table").fetchall() == [(4500,)]

    # Writes over flushed rows behave the same, and the FlightInfo schema matches DoGet's.
    run(conn, f"UPDATE {ns}.c SET room = 'moved' WHERE id = 1")
    assert run(conn, f"SELECT room FROM {ns}.c WHERE id = 1").column("room")[0].as_py() == "moved"
    client = flight.FlightClient(server.flight_url)
    options = flight.FlightCallOptions(headers=[client.authenticate_basic_token(b"root", b"")])
    info = client.get_flight_info(
        flight.FlightDescriptor.for_command(_statement_query(f"SELECT * FROM {ns}.c WHERE id < 100")), options)
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    assert table.schema == info.schema
    assert table.num_rows == 90
