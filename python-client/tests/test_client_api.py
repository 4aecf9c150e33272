"""The `quilldb` package against the real server: statements, parameters, ingest, transactions,
errors, subscriptions (with resume across a restart), flush, asyncio and the ADBC helper."""

import asyncio
import os
import signal
import socket
import threading
import time
import uuid

import pyarrow as pa
import pytest

import quilldb
import quilldb.aio
from conftest import Server


@pytest.fixture()
def db(server):
    with quilldb.connect(server.flight_url, user="root", password="") as c:
        yield c


@pytest.fixture()
def table(db, ns):
    db.execute(f"CREATE TABLE {ns}.m (id BIGINT PRIMARY KEY, room TEXT, body TEXT)")
    return f"{ns}.m"


def test_connect_reads_the_environment(server, monkeypatch):
    monkeypatch.setenv("QUILLDB_URL", server.flight_url)
    monkeypatch.setenv("QUILLDB_USER", "root")
    monkeypatch.setenv("QUILLDB_PASSWORD", "")
    with quilldb.connect() as c:
        assert c.query("SELECT current_user() AS u").column("u").to_pylist() == ["root"]


def test_execute_query_and_parameters(db, table):
    assert db.execute(f"INSERT INTO {table} (id, room, body) VALUES ($1, $2, $3)", [1, "lobby", "hi"]) == 1
    n = db.execute_many(f"INSERT INTO {table} (id, room) VALUES ($1, $2)", [(2, "lobby"), (3, "dev")])
    assert n == 2
    t = db.query(f"SELECT id, body FROM {table} WHERE room = $1 ORDER BY id", ["lobby"])
    assert isinstance(t, pa.Table)
    assert t.to_pylist() == [{"id": 1, "body": "hi"}, {"id": 2, "body": None}]
    # A primary-key lookup with a parameter, and a plain statement.
    assert db.query(f"SELECT room FROM {table} WHERE id = $1", [3]).column(0).to_pylist() == ["dev"]
    assert db.execute(f"UPDATE {table} SET body = $1 WHERE id = $2", ["edited", 3]) == 1
    assert db.execute(f"DELETE FROM {table} WHERE room = 'lobby'") == 2
    # An empty result keeps its schema.
    empty = db.query(f"SELECT id, room FROM {table} WHERE id = $1", [99])
    assert empty.num_rows == 0 and empty.schema.names == ["id", "room"]
    assert empty.schema.field("id").type == pa.int64()


def test_prepared_statements_are_made_once_per_text(db, table):
    sql = f"INSERT INTO {table} (id, room) VALUES ($1, $2)"
    for i in range(20):
        db.execute(sql, [100 + i, "r"])
    lookup = f"SELECT room FROM {table} WHERE id = $1"
    for i in range(20):
        assert db.query(lookup, [100 + i]).column(0).to_pylist() == ["r"]
    assert set(db._prepared) >= {sql, lookup} and len(db._prepared) == 2


def test_execute_many_is_atomic_and_takes_arrow(db, table):
    rows = pa.table({"id": pa.array([10, 11, 12], pa.int64()), "room": ["a", "b", "c"]})
    assert db.execute_many(f"INSERT INTO {table} (id, room) VALUES ($1, $2)", rows) == 3
    with pytest.raises(quilldb.AlreadyExists) as e:
        db.execute_many(f"INSERT INTO {table} (id, room) VALUES ($1, $2)", [(20, "x"), (10, "dup"), (21, "y")])
    assert "10" in e.value.message and e.value.code == "ALREADY_EXISTS"
    assert db.query(f"SELECT count(*) AS n FROM {table} WHERE id >= 20").column(0)[0].as_py() == 0


def test_errors_carry_the_grpc_code_and_the_servers_message(server, db, table):
    with pytest.raises(quilldb.InvalidArgument) as e:
        db.query("SELEC 1")
    assert "SELEC" in str(e.value) and str(e.value).startswith("INVALID_ARGUMENT: ")
    with pytest.raises(quilldb.NotFound):
        db.query("SELECT * FROM nowhere.none")
    with pytest.raises(quilldb.AlreadyExists):
        db.execute(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY)")
    with pytest.raises(quilldb.InvalidArgument):
        db.execute(f"INSERT INTO {table} (id, room) VALUES ($1, $2)", ["not a number", "x"])
    with pytest.raises(quilldb.Unauthenticated):
        quilldb.connect(server.flight_url, user="root", password="wrong")
    user = "u" + uuid.uuid4().hex[:8]
    db.execute(f"CREATE USER {user} WITH PASSWORD 'pw-{user}-1' ROLE user")
    with quilldb.connect(server.flight_url, user=user, password=f"pw-{user}-1") as other:
        with pytest.raises(quilldb.PermissionDenied):
            other.query(f"SELECT * FROM {table}")
    assert issubclass(quilldb.Aborted, quilldb.Error)
    db.execute(f"INSERT INTO {table} (id) VALUES (1)")  # the server kept serving


def test_ingest_arrow_polars_and_pandas_in_one_atomic_call(db, ns):
    import pandas as pd
    import polars as pl

    db.execute(f"CREATE TABLE {ns}.big (id BIGINT PRIMARY KEY, a BIGINT, s TEXT)")
    # ~44 MB in one batch: above gRPC's 16 MiB message limit, so it must travel in pieces.
    n = 1_000_000
    data = pa.table({
        "id": pa.array(range(n), pa.int64()),
        "a": pa.array(range(n), pa.int64()),
        "s": pa.array([f"{i:020d}" for i in range(n)]),
    })
    assert data.nbytes > 32 << 20
    assert db.ingest(f"{ns}.big", data) == n
    assert db.query(f"SELECT count(*) AS n, sum(a) AS total FROM {ns}.big").to_pylist()[0] == {
        "n": n, "total": n * (n - 1) // 2}
    frame = pl.DataFrame({"id": [n, n + 1], "a": [1, 2], "s": ["polars", "frame"]})  # string_view
    assert db.ingest(f"{ns}.big", frame) == 2
    assert db.ingest(f"{ns}.big", pd.DataFrame({"id": [n + 2], "a": [3], "s": ["pandas"]})) == 1
    # A duplicate key in the last piece: nothing of the call is written.
    dup = pa.table({"id": pa.array(list(range(n + 10, n + 400_000)) + [5], pa.int64()),
                    "a": pa.array([0] * 399_991, pa.int64()), "s": pa.array(["x" * 40] * 399_991)})
    with pytest.raises(quilldb.AlreadyExists):
        db.ingest(f"{ns}.big", dup)
    assert db.query(f"SELECT count(*) AS n FROM {ns}.big").column(0)[0].as_py() == n + 3
    with pytest.raises(quilldb.InvalidArgument):
        db.ingest(f"{ns}.big", data.slice(0, 1), mode="overwrite")


def test_query_polars_and_pandas(db, table):
    db.execute_many(f"INSERT INTO {table} (id, room) VALUES ($1, $2)", [(1, "a"), (2, "b")])
    df = db.query_polars(f"SELECT id, room FROM {table} ORDER BY id")
    assert df.to_dicts() == [{"id": 1, "room": "a"}, {"id": 2, "room": "b"}]
    assert db.query_pandas(f"SELECT room FROM {table} WHERE id = $1", [2])["room"].tolist() == ["b"]


def test_transactions_commit_on_exit_and_roll_back_on_error(db, table):
    with db.transaction() as tx:
        tx.execute(f"INSERT INTO {table} (id, room) VALUES ($1, $2)", [1, "tx"])
        assert tx.query(f"SELECT count(*) AS n FROM {table}").column(0)[0].as_py() == 1
        assert db.query(f"SELECT count(*) AS n FROM {table}").column(0)[0].as_py() == 0
    assert db.query(f"SELECT room FROM {table} WHERE id = $1", [1]).column(0).to_pylist() == ["tx"]
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            tx.execute(f"INSERT INTO {table} (id, room) VALUES ($1, $2)", [2, "gone"])
            raise RuntimeError("boom")
    assert db.query(f"SELECT count(*) AS n FROM {table}").column(0)[0].as_py() == 1


def test_a_write_conflict_is_aborted(db, table):
    db.execute(f"INSERT INTO {table} (id, room) VALUES (1, 'start')")
    first, second = db.transaction(), db.transaction()
    first.execute(f"UPDATE {table} SET room = 'first' WHERE id = 1")
    second.execute(f"UPDATE {table} SET room = 'second' WHERE id = 1")
    first.commit()
    with pytest.raises(quilldb.Aborted):
        second.commit()
    assert db.query(f"SELECT room FROM {table} WHERE id = 1").column(0).to_pylist() == ["first"]


def test_subscribe_yields_snapshot_then_changes(db, table):
    db.execute_many(f"INSERT INTO {table} (id, room, body) VALUES ($1, $2, $3)",
                    [(1, "lobby", "a"), (2, "dev", "b"), (3, "lobby", "c")])
    with db.subscribe(f"SUBSCRIBE TO {table} WHERE room = $1", ["lobby"], last_rows=1) as sub:
        kinds, rows = [], []
        for ev in sub:
            kinds.append(ev.kind)
            if ev.batch is not None:
                assert ev.batch.schema.names[-2:] == ["_seq", "_op"]
                rows += ev.batch.to_pylist()
            if ev.kind == "initial_done":
                assert ev.last_seq > 0 and ev.subscription_id.startswith("LQ-")
                db.execute(f"INSERT INTO {table} (id, room, body) VALUES ($1, $2, $3)", [4, "lobby", "d"])
                db.execute(f"INSERT INTO {table} (id, room, body) VALUES ($1, $2, $3)", [5, "dev", "e"])
                db.execute(f"DELETE FROM {table} WHERE id = 3")
            if ev.kind == "change" and any(r["_op"] == 3 for r in rows):
                break
        assert kinds[:3] == ["ack", "initial", "initial_done"]
        assert [(r["id"], r["_op"]) for r in rows] == [(3, 0), (4, 1), (3, 3)]
        live = db.query("SELECT live_id FROM system.live_queries").column(0).to_pylist()
        assert sub.subscription_id in live
    deadline = time.time() + 10
    while sub.subscription_id in db.query("SELECT live_id FROM system.live_queries").column(0).to_pylist():
        assert time.time() < deadline, "closing the subscription ends it on the server"
        time.sleep(0.05)


def test_subscription_errors_and_kill(db, table):
    with pytest.raises(quilldb.NotFound):
        db.subscribe("SUBSCRIBE TO nowhere.none")
    with pytest.raises(quilldb.InvalidArgument):
        db.subscribe(f"SUBSCRIBE TO {table} ORDER BY id")
    sub = db.subscribe(f"SUBSCRIBE TO {table}")
    assert next(sub).kind == "ack"
    db.execute(f"KILL LIVE QUERY '{sub.subscription_id}'")
    last = list(sub)[-1]
    assert (last.kind, last.code) == ("closed", "killed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_auto_resume_after_a_restart_and_a_crash_yields_each_change_once(tmp_path):
    addr = f"127.0.0.1:{free_port()}"
    server = Server(tmp_path, flight_addr=addr)
    try:
        db = quilldb.connect(server.flight_url)
        db.execute("CREATE NAMESPACE r")
        db.execute("CREATE TABLE r.t (id BIGINT PRIMARY KEY, v TEXT)")
        db.execute_many("INSERT INTO r.t (id, v) VALUES ($1, $2)", [(i, "old") for i in range(3)])
        sub = db.subscribe("SUBSCRIBE TO r.t", resume_timeout=60)
        seen = []

        def take(count):
            while len([s for s in seen if s[1] != 0]) < count:
                ev = next(sub)
                if ev.batch is not None:
                    seen.extend((r["id"], r["_op"]) for r in ev.batch.to_pylist())

        while next(sub).kind != "initial_done":
            pass
        assert sorted(seen) == []  # batches are read by take() from here on
        seen.extend((i, 0) for i in range(3))
        db.execute("INSERT INTO r.t (id, v) VALUES (10, 'before')")
        take(1)
        db.close()
        for stop in (server.stop, lambda: (server.proc.send_signal(signal.SIGKILL), server.proc.wait())):
            stop()
            server = Server(tmp_path, flight_addr=addr)
            with quilldb.connect(server.flight_url) as writer:
                n = len([s for s in seen if s[1] != 0])
                writer.execute("INSERT INTO r.t (id, v) VALUES ($1, 'after')", [20 + n])
            take(n + 1)
        assert sub.resumes == 2
        # Every row once; a resumed stream sends rows written after `from` as changes (insert
        # or update: it replays current versions, spec/flight.md "Resume").
        assert [i for i, _ in seen] == [0, 1, 2, 10, 21, 22], seen
        assert [op for _, op in seen[:4]] == [0, 0, 0, 1] and {op for _, op in seen[4:]} <= {1, 2}
        sub.close()
    finally:
        if server.proc.poll() is None:
            server.stop()


def test_flush_waits_for_its_job(db, table):
    db.execute_many(f"INSERT INTO {table} (id, room) VALUES ($1, $2)", [(i, "r") for i in range(50)])
    job = db.flush(table, wait=True)
    status = db.query("SELECT status FROM system.jobs WHERE job_id = $1", [job]).column(0).to_pylist()
    assert status == ["completed"]
    assert db.query(f"SELECT count(*) AS n FROM {table}").column(0)[0].as_py() == 50


def test_adbc_connect_is_a_dbapi_connection(server, table):
    conn = quilldb.adbc_connect(server.flight_url, user="root", password="")
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT count(*) AS n FROM {table}")
        assert cur.fetchone() == (0,)
        cur.close()
    finally:
        conn.close()


def test_asyncio_api_does_not_block_the_loop(server, ns):
    async def main():
        async with await quilldb.aio.connect(server.flight_url) as db:
            await db.execute(f"CREATE TABLE {ns}.a (id BIGINT PRIMARY KEY, v TEXT)")
            assert await db.execute(f"INSERT INTO {ns}.a (id, v) VALUES ($1, $2)", [1, "x"]) == 1
            async with db.transaction() as tx:
                await tx.execute(f"INSERT INTO {ns}.a (id, v) VALUES ($1, $2)", [2, "y"])
            got = []
            async with db.subscribe(f"SUBSCRIBE TO {ns}.a") as sub:
                async def reader():
                    async for ev in sub:
                        if ev.batch is not None:
                            got.extend(ev.batch.column("id").to_pylist())
                        if len(got) == 3:
                            return

                task = asyncio.create_task(reader())
                # While the subscription waits, other calls and timers go on.
                ticks = 0
                for _ in range(5):
                    await asyncio.sleep(0.01)
                    ticks += 1
                counts = await asyncio.gather(*[db.query(f"SELECT count(*) AS n FROM {ns}.a") for _ in range(8)])
                assert [c.column(0)[0].as_py() for c in counts] == [2] * 8 and ticks == 5
                await db.execute(f"INSERT INTO {ns}.a (id, v) VALUES ($1, $2)", [3, "z"])
                await asyncio.wait_for(task, 20)
            assert sorted(got) == [1, 2, 3]

    asyncio.run(main())
