"""The Flight SQL surface through stock clients: prepared statements, bulk ingest, metadata,
transactions, session options and cancellation."""

import datetime
import decimal
import threading

import pyarrow as pa
import pyarrow.flight as flight
import pytest

import wire
from wire import run


def count(conn, table):
    return run(conn, f"SELECT count(*) AS n FROM {table}").column("n").to_pylist()[0]


# ---------------------------------------------------------------- prepared statements


def test_prepared_parameters_are_typed_and_reused(conn, ns):
    run(conn, f"CREATE TABLE {ns}.p (id BIGINT PRIMARY KEY, v TEXT, at TIMESTAMPTZ, d DECIMAL(10,2))")
    cur = conn.cursor()
    params = cur.adbc_prepare(f"INSERT INTO {ns}.p (id, v, at, d) VALUES ($1, $2, $3, $4)")
    assert params.types == [pa.int64(), pa.string(), pa.timestamp("us", tz="UTC"), pa.decimal128(10, 2)]
    when = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc)
    for i in range(5):
        cur.execute(f"INSERT INTO {ns}.p (id, v, at, d) VALUES ($1, $2, $3, $4)",
                    (i, f"v{i}", when, decimal.Decimal("12.34")))
    params = cur.adbc_prepare(f"SELECT v FROM {ns}.p WHERE id = $1")
    assert params.types == [pa.int64()]
    params = cur.adbc_prepare(f"UPDATE {ns}.p SET v = $2, d = d + $3 WHERE id = $1")
    assert params.types == [pa.int64(), pa.string(), pa.decimal128(10, 2)]
    params = cur.adbc_prepare(f"DELETE FROM {ns}.p WHERE at < ?")
    assert params.types == [pa.timestamp("us", tz="UTC")]
    seen = []
    for i in (3, 1, 4):
        cur.execute(f"SELECT v, at, d FROM {ns}.p WHERE id = $1", (i,))
        t = cur.fetch_arrow_table()
        seen.append(t.column("v").to_pylist()[0])
        assert t.column("at").to_pylist() == [when]
        assert t.column("d").to_pylist() == [decimal.Decimal("12.34")]
    assert seen == ["v3", "v1", "v4"]
    cur.close()


def test_prepared_statement_sees_ddl_made_after_it(conn, ns):
    run(conn, f"CREATE TABLE {ns}.a (id BIGINT PRIMARY KEY, v TEXT)")
    run(conn, f"INSERT INTO {ns}.a VALUES (1, 'old')")
    cur = conn.cursor()
    cur.execute(f"SELECT v FROM {ns}.a WHERE id = $1", (1,))
    assert cur.fetch_arrow_table().column("v").to_pylist() == ["old"]
    run(conn, f"DROP TABLE {ns}.a")
    run(conn, f"CREATE TABLE {ns}.a (id BIGINT PRIMARY KEY, v TEXT)")
    run(conn, f"INSERT INTO {ns}.a VALUES (1, 'new')")
    cur.execute(f"SELECT v FROM {ns}.a WHERE id = $1", (1,))
    assert cur.fetch_arrow_table().column("v").to_pylist() == ["new"]
    cur.close()


def test_executemany_runs_every_row_atomically(conn, ns):
    run(conn, f"CREATE TABLE {ns}.e (id BIGINT PRIMARY KEY, v TEXT NOT NULL)")
    cur = conn.cursor()
    cur.executemany(f"INSERT INTO {ns}.e (id, v) VALUES ($1, $2)", [(i, f"r{i}") for i in range(1000)])
    assert count(conn, f"{ns}.e") == 1000
    cur.executemany(f"UPDATE {ns}.e SET v = $2 WHERE id = $1", [(1, "one"), (2, "two")])
    assert run(conn, f"SELECT v FROM {ns}.e WHERE id IN (1, 2) ORDER BY id").column("v").to_pylist() == ["one", "two"]
    with pytest.raises(Exception):
        cur.executemany(f"INSERT INTO {ns}.e (id, v) VALUES ($1, $2)", [(5000, "x"), (7, "dup")])
    assert count(conn, f"{ns}.e") == 1000
    cur.close()


# ---------------------------------------------------------------- bulk ingest


def test_adbc_ingest_appends_atomically(conn, ns):
    run(conn, f"CREATE TABLE {ns}.ing (id BIGINT PRIMARY KEY, name TEXT NOT NULL, score DOUBLE, at TIMESTAMP)")
    n = 200_000
    data = pa.table({
        "id": pa.array(range(n), pa.int64()),
        "name": pa.array([f"n{i}" for i in range(n)], pa.large_string()),
        "score": pa.array([i / 2 for i in range(n)], pa.float64()),
    })
    cur = conn.cursor()
    assert cur.adbc_ingest("ing", data, mode="append", db_schema_name=ns) == n
    assert count(conn, f"{ns}.ing") == n
    # A view-typed column (Polars' default) is accepted and stored as text.
    more = pa.table({"id": pa.array([n], pa.int64()), "name": pa.array(["view"], pa.string_view())})
    cur.adbc_ingest("ing", more, mode="append", db_schema_name=ns)
    assert run(conn, f"SELECT name, score FROM {ns}.ing WHERE id = {n}").to_pylist() == [{"name": "view", "score": None}]
    # One duplicate key rejects the whole call.
    dup = pa.table({"id": pa.array([n + 1, 5], pa.int64()), "name": pa.array(["x", "y"])})
    with pytest.raises(Exception) as err:
        cur.adbc_ingest("ing", dup, mode="append", db_schema_name=ns)
    assert "id = 5" in str(err.value)
    assert count(conn, f"{ns}.ing") == n + 1
    # NOT NULL and unknown columns are refused with the column named.
    with pytest.raises(Exception) as err:
        cur.adbc_ingest("ing", pa.table({"id": [n + 2], "nope": [1]}), mode="append", db_schema_name=ns)
    assert "nope" in str(err.value)
    cur.close()


def test_adbc_ingest_of_one_large_batch_needs_chunks_or_the_size_option(server, conn, ns):
    """The ADBC driver sends each batch as one gRPC message and refuses any over 16 MiB:
    what the README tells users to do about it must work."""
    import adbc_driver_flightsql.dbapi as flight_sql
    from adbc_driver_flightsql import DatabaseOptions

    run(conn, f"CREATE TABLE {ns}.big (id BIGINT PRIMARY KEY, a DOUBLE, b DOUBLE, c BIGINT)")
    n = 1_200_000  # 38 MB of values in one batch
    table = pa.table({
        "id": pa.array(range(n), pa.int64()),
        "a": pa.array([i * 0.5 for i in range(n)], pa.float64()),
        "b": pa.array([i * 0.25 for i in range(n)], pa.float64()),
        "c": pa.array(range(n), pa.int64()),
    }).combine_chunks()
    assert len(table.to_batches()) == 1
    cur = conn.cursor()
    with pytest.raises(Exception) as err:
        cur.adbc_ingest("big", table, mode="append", db_schema_name=ns)
    assert "larger than max" in str(err.value) or "ResourceExhausted" in str(err.value)
    cur.close()
    assert count(conn, f"{ns}.big") == 0

    # Either cut the table into batches...
    cur = conn.cursor()
    head = 200_000
    chunked = pa.Table.from_batches(table.slice(0, head).to_batches(max_chunksize=50_000))
    assert cur.adbc_ingest("big", chunked, mode="append", db_schema_name=ns) == head
    cur.close()
    # ...or raise the driver's limit (the server takes up to limits.max_message_bytes, 64 MiB).
    big = flight_sql.connect(
        server.flight_url,
        db_kwargs={"username": "root", "password": "",
                   DatabaseOptions.WITH_MAX_MSG_SIZE.value: str(64 << 20)},
    )
    try:
        cur = big.cursor()
        rest = table.slice(head).combine_chunks()  # 1M rows, 32 MB, one message
        assert rest.nbytes > 16 << 20
        assert cur.adbc_ingest("big", rest, mode="append", db_schema_name=ns) == n - head
        cur.close()
    finally:
        big.close()
    assert count(conn, f"{ns}.big") == n


def test_ingest_modes_that_create_or_replace_fail_clearly(conn, ns):
    run(conn, f"CREATE TABLE {ns}.m (id BIGINT PRIMARY KEY)")
    cur = conn.cursor()
    data = pa.table({"id": pa.array([1], pa.int64())})
    for mode, words in (("create", "cannot create"), ("replace", "cannot replace")):
        with pytest.raises(Exception) as err:
            cur.adbc_ingest("m", data, mode=mode, db_schema_name=ns)
        assert words in str(err.value)
    with pytest.raises(Exception) as err:
        cur.adbc_ingest("missing", data, mode="append", db_schema_name=ns)
    assert "does not exist" in str(err.value)
    # create_append on an existing table appends.
    assert cur.adbc_ingest("m", data, mode="create_append", db_schema_name=ns) == 1
    cur.close()


def test_polars_write_and_read(connect, ns):
    import polars as pl

    conn = connect(autocommit=True)
    run(conn, f"CREATE TABLE {ns}.pw (id BIGINT PRIMARY KEY, city TEXT, temp DOUBLE)")
    df = pl.DataFrame({"id": [1, 2, 3], "city": ["Oslo", "Lima", "Pune"], "temp": [3.5, 18.0, 31.25]})
    uri = conn.adbc_database  # noqa: F841  (the connection object is what Polars takes)
    written = df.write_database(f"{ns}.pw", connection=conn, engine="adbc", if_table_exists="append")
    assert written == 3
    back = pl.read_database(f"SELECT id, city, temp FROM {ns}.pw ORDER BY id", connection=conn)
    assert back.equals(df)


# ---------------------------------------------------------------- metadata


def test_get_objects_table_schema_and_info(conn, ns):
    run(conn, f"CREATE TABLE {ns}.meta (id BIGINT PRIMARY KEY, price DECIMAL(12,3) NOT NULL, note TEXT)")
    objects = conn.adbc_get_objects(depth="all", db_schema_filter=ns).read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["quill"]
    schemas = objects[0]["catalog_db_schemas"]
    assert [s["db_schema_name"] for s in schemas] == [ns]
    table = schemas[0]["db_schema_tables"][0]
    assert table["table_name"] == "meta" and table["table_type"] == "BASE TABLE"
    columns = {c["column_name"]: c for c in table["table_columns"]}
    assert list(columns) == ["id", "price", "note", "_seq"]
    assert columns["price"]["xdbc_type_name"] == "DECIMAL(12,3)"

    schema = conn.adbc_get_table_schema("meta", db_schema_filter=ns)
    assert schema.field("price").type == pa.decimal128(12, 3)
    assert not schema.field("price").nullable
    md = schema.field("price").metadata
    assert md[b"ARROW:FLIGHT:SQL:TYPE_NAME"] == b"DECIMAL(12,3)"
    assert md[b"ARROW:FLIGHT:SQL:PRECISION"] == b"12" and md[b"ARROW:FLIGHT:SQL:SCALE"] == b"3"
    assert schema.metadata[b"quill.table_type"] == b"SHARED"

    info = conn.adbc_get_info()
    assert info["vendor_name"] == "QuillDB"
    assert info["vendor_version"]
    assert info["vendor_arrow_version"].split(".")[0] == "59"
    assert sorted(conn.adbc_get_table_types()) == ["BASE TABLE", "SYSTEM TABLE", "VIEW"]


def test_get_tables_filters_and_system_tables(conn, ns):
    run(conn, f"CREATE TABLE {ns}.orders (id BIGINT PRIMARY KEY)")
    run(conn, f"CREATE TABLE {ns}.order_lines (id BIGINT PRIMARY KEY)")
    run(conn, f"CREATE TABLE {ns}.users (id BIGINT PRIMARY KEY)")
    objects = conn.adbc_get_objects(depth="tables", db_schema_filter=ns, table_name_filter="order%").read_all().to_pylist()
    names = sorted(t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"])
    assert names == ["order_lines", "orders"]
    system = conn.adbc_get_objects(depth="tables", db_schema_filter="system", table_types_filter=["SYSTEM TABLE"]).read_all().to_pylist()
    names = {t["table_name"] for c in system for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]}
    assert {"namespaces", "tables", "columns"} <= names
    all_schemas = conn.adbc_get_objects(depth="db_schemas").read_all().to_pylist()
    names = {s["db_schema_name"] for c in all_schemas for s in c["catalog_db_schemas"]}
    assert {ns, "system", "information_schema"} <= names
    base_only = conn.adbc_get_objects(depth="tables", table_types_filter=["BASE TABLE"]).read_all().to_pylist()
    schemas = {s["db_schema_name"] for c in base_only for s in c["catalog_db_schemas"] if s["db_schema_tables"]}
    assert "system" not in schemas


def test_raw_metadata_calls(server, conn, ns):
    run(conn, f"CREATE TABLE {ns}.pk (code TEXT PRIMARY KEY, v INT)")
    raw = wire.RawClient(server.flight_url)
    schema, keys = raw.fetch(wire.primary_keys("pk", ns))
    assert keys.schema == schema
    assert keys.to_pylist() == [{"catalog_name": "quill", "db_schema_name": ns, "table_name": "pk",
                                 "column_name": "code", "key_name": None, "key_sequence": 1}]
    schema, exported = raw.fetch(wire.exported_keys("pk"))
    assert exported.num_rows == 0 and exported.schema == schema
    assert "fk_table_name" in exported.schema.names
    schema, types = raw.fetch(wire.xdbc_type_info())
    assert types.schema == schema
    names = types.column("type_name").to_pylist()
    for t in ("BOOLEAN", "SMALLINT", "INT", "BIGINT", "REAL", "DOUBLE", "DECIMAL", "TEXT", "BYTEA",
              "DATE", "TIME", "TIMESTAMP", "TIMESTAMPTZ", "JSON", "UUID"):
        assert t in names
    actions = {a.type for a in raw.client.list_actions(raw.options)}
    assert actions == {"CreatePreparedStatement", "ClosePreparedStatement", "BeginTransaction",
                       "EndTransaction", "CancelQuery", "CancelFlightInfo", "SetSessionOptions",
                       "GetSessionOptions", "CloseSession"}
    # GetSchema answers the FlightInfo's schema without running anything.
    query = wire.statement_query(f"SELECT code, v * 2 AS twice FROM {ns}.pk")
    got = raw.client.get_schema(flight.FlightDescriptor.for_command(query), raw.options).schema
    assert got == raw.info(query).schema
    insert = wire.statement_query(f"INSERT INTO {ns}.pk VALUES ('x', 1)")
    got = raw.client.get_schema(flight.FlightDescriptor.for_command(insert), raw.options).schema
    assert got.names == ["rows_affected"]
    assert count(conn, f"{ns}.pk") == 0
    got = raw.client.get_schema(flight.FlightDescriptor.for_command(wire.primary_keys("pk", ns)), raw.options).schema
    assert got == keys.schema


QUERIES = [
    "SELECT count(*) AS n, sum(v) AS s, avg(v) AS a, min(name) AS lo FROM {t}",
    "SELECT v * 2 + 1 AS e, upper(name) AS u, v IS NULL AS missing FROM {t}",
    "SELECT NULL AS nothing, 1 AS one, 'x' AS s, 2.5 AS f",
    "SELECT name, concat(name, '!') AS shout FROM {t} WHERE name LIKE 'a%'",
    "SELECT at, at_tz, CAST(at AS DATE) AS day, now() AS n FROM {t}",
    "SELECT price, price * 2 AS twice, CAST(1.5 AS DECIMAL(5,2)) AS lit FROM {t}",
    "SELECT * FROM {t} WHERE id < 0",
    "SELECT name, count(*) AS c FROM {t} GROUP BY name ORDER BY name",
    "SELECT arrow_cast('abc', 'Utf8View') AS view_text, arrow_cast(x'01', 'BinaryView') AS view_bin",
    "SELECT * FROM {t}",
]


@pytest.mark.parametrize("query", QUERIES)
def test_flight_info_schema_is_the_do_get_schema(server, conn, ns, query):
    t = f"{ns}.s"
    run(conn, f"""CREATE TABLE IF NOT EXISTS {t} (id BIGINT PRIMARY KEY, name TEXT, v INT,
                  at TIMESTAMP, at_tz TIMESTAMPTZ, price DECIMAL(9,2))""")
    run(conn, f"""INSERT INTO {t} VALUES (1, 'ab', 3, '2024-01-01 00:00:00', '2024-01-01T00:00:00Z', 1.25),
                  (2, 'cd', NULL, NULL, NULL, NULL)""")
    raw = wire.RawClient(server.flight_url)
    schema, table = raw.fetch(wire.statement_query(query.format(t=t)))
    assert table.schema == schema
    assert table.schema.metadata == schema.metadata
    for f in schema:
        assert not pa.types.is_string_view(f.type) and not pa.types.is_binary_view(f.type), f
        if pa.types.is_timestamp(f.type) and f.name == "at_tz":
            assert f.type.tz is not None


# ---------------------------------------------------------------- transactions


def test_transactions_commit_and_rollback(connect, ns):
    admin = connect(autocommit=True)
    run(admin, f"CREATE TABLE {ns}.tx (id BIGINT PRIMARY KEY, v TEXT)")
    run(admin, f"INSERT INTO {ns}.tx VALUES (1, 'base')")
    tx = connect(autocommit=False)
    run(tx, f"INSERT INTO {ns}.tx VALUES (2, 'pending')")
    run(tx, f"UPDATE {ns}.tx SET v = 'changed' WHERE id = 1")
    # Own reads see the pending writes; others do not.
    assert run(tx, f"SELECT id, v FROM {ns}.tx ORDER BY id").to_pylist() == [
        {"id": 1, "v": "changed"}, {"id": 2, "v": "pending"}]
    assert run(admin, f"SELECT id, v FROM {ns}.tx ORDER BY id").to_pylist() == [{"id": 1, "v": "base"}]
    tx.commit()
    assert run(admin, f"SELECT id, v FROM {ns}.tx ORDER BY id").to_pylist() == [
        {"id": 1, "v": "changed"}, {"id": 2, "v": "pending"}]
    run(tx, f"DELETE FROM {ns}.tx WHERE id = 1")
    run(tx, f"INSERT INTO {ns}.tx VALUES (3, 'never')")
    assert count(tx, f"{ns}.tx") == 2
    tx.rollback()
    assert run(admin, f"SELECT id FROM {ns}.tx ORDER BY id").column("id").to_pylist() == [1, 2]
    # Prepared statements made inside a transaction run in it.
    cur = tx.cursor()
    cur.executemany(f"INSERT INTO {ns}.tx (id, v) VALUES ($1, $2)", [(20, "a"), (21, "b")])
    cur.execute(f"SELECT count(*) AS n FROM {ns}.tx WHERE id >= $1", (20,))
    assert cur.fetch_arrow_table().column("n").to_pylist() == [2]
    cur.close()
    assert count(admin, f"{ns}.tx") == 2
    tx.commit()
    assert count(admin, f"{ns}.tx") == 4


def test_conflicting_commit_is_aborted_and_applies_nothing(connect, ns):
    admin = connect(autocommit=True)
    run(admin, f"CREATE TABLE {ns}.c (id BIGINT PRIMARY KEY, v INT)")
    run(admin, f"INSERT INTO {ns}.c VALUES (1, 0), (2, 0)")
    tx = connect(autocommit=False)
    run(tx, f"SELECT 1")  # the transaction has begun
    run(tx, f"UPDATE {ns}.c SET v = 1 WHERE id = 2")
    run(tx, f"UPDATE {ns}.c SET v = 1 WHERE id = 1")
    run(admin, f"UPDATE {ns}.c SET v = 99 WHERE id = 1")
    with pytest.raises(Exception) as err:
        tx.commit()
    assert "ABORTED" in str(err.value) or "another commit" in str(err.value)
    assert run(admin, f"SELECT id, v FROM {ns}.c ORDER BY id").to_pylist() == [{"id": 1, "v": 99}, {"id": 2, "v": 0}]


# ---------------------------------------------------------------- sessions and cancellation


def _set_schema(value: str) -> bytes:
    option = wire.field(1, value.encode())  # SessionOptionValue.string_value
    entry = wire.field(1, b"schema") + wire.field(2, option)
    return wire.field(1, entry)


def test_session_options(server, conn, ns):
    run(conn, f"CREATE TABLE {ns}.so (id BIGINT PRIMARY KEY)")
    run(conn, f"INSERT INTO {ns}.so VALUES (7)")
    raw = wire.RawClient(server.flight_url)
    [result] = raw.action("SetSessionOptions", _set_schema(ns))
    assert wire.parse(result) == {}  # no errors
    [got] = raw.action("GetSessionOptions")
    entries = [wire.parse(e) for e in wire.parse(got)[1]]
    options = {e[1][0].decode(): wire.parse(e[2][0])[1][0].decode() for e in entries}
    assert options == {"catalog": "quill", "schema": ns}
    _, t = raw.fetch(wire.statement_query("SELECT id FROM so"))
    assert t.column("id").to_pylist() == [7]
    [bad] = raw.action("SetSessionOptions", _set_schema("no_such_ns"))
    assert 1 in wire.parse(bad)  # an error for the option
    [closed] = raw.action("CloseSession")
    assert wire.parse(closed) == {1: [1]}  # CLOSED
    with pytest.raises(flight.FlightUnauthenticatedError):
        raw.fetch(wire.statement_query("SELECT 1"))


def _metric(server, line_start: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(server.http_url + "/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_cancel_flight_info(server):
    import signal
    import time

    # pyarrow takes a CANCELLED status for an interrupted call and re-raises SIGINT in the
    # process; keep it from interrupting the test runner.
    interrupts = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupts.append(1))
    try:
        raw = wire.RawClient(server.flight_url)
        slow = "SELECT count(*) AS n FROM generate_series(1, 100000000000)"
        cancelled = 'quill_flight_requests_total{method="DoGet",status="Cancelled"}'
        before = _metric(server, cancelled)
        info = raw.info(wire.statement_query(slow))
        outcome = []

        def read():
            try:
                outcome.append(raw.client.do_get(info.endpoints[0].ticket, raw.options).read_all())
            except BaseException as e:  # noqa: BLE001
                outcome.append(e)

        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(0.5)
        [result] = raw.action("CancelFlightInfo", wire.field(1, info.serialize()))
        assert wire.parse(result) == {1: [1]}  # CANCELLED
        reader.join(timeout=30)
        assert not reader.is_alive(), "the cancelled query kept streaming"
        assert not isinstance(outcome[0], pa.Table) or outcome[0].num_rows == 0
        deadline = time.time() + 5
        while _metric(server, cancelled) < before + 1 and time.time() < deadline:
            time.sleep(0.05)
        assert _metric(server, cancelled) == before + 1
        # A ticket cancelled before its DoGet is gone.
        info = raw.info(wire.statement_query("SELECT 1"))
        raw.action("CancelFlightInfo", wire.field(1, info.serialize()))
        with pytest.raises(pa.ArrowKeyError, match="unknown or expired ticket"):
            raw.client.do_get(info.endpoints[0].ticket, raw.options).read_all()
        # The server goes on serving.
        _, t = raw.fetch(wire.statement_query("SELECT 2 AS two"))
        assert t.column("two").to_pylist() == [2]
    finally:
        signal.signal(signal.SIGINT, previous)
