"""Live queries read by a plain pyarrow.flight client, with no QuillDB code: DoExchange with the
SUBSCRIBE text as the descriptor's command, the SubscriptionEvent of flight/proto decoded from
each message's app_metadata by the tests' own protobuf reader (wire.parse)."""

import pyarrow as pa
import pyarrow.flight as flight

from wire import parse, run

KINDS = ["ACK", "INITIAL", "INITIAL_DONE", "CHANGE", "CLOSED", "ERROR", "HEARTBEAT"]


def event(metadata):
    """SubscriptionEvent {kind=1, subscription_id=2, last_seq=3, code=4, message=5}."""
    fields = parse(bytes(metadata or b""))

    def one(number, default):
        return fields.get(number, [default])[-1]

    return {
        "kind": KINDS[one(1, 0)],
        "subscription_id": one(2, b"").decode(),
        "last_seq": one(3, 0),
        "code": one(4, b"").decode(),
        "message": one(5, b"").decode(),
    }


def subscribe(server, sql, user=b"root", password=b""):
    client = flight.FlightClient(server.flight_url)
    token = client.authenticate_basic_token(user, password)
    options = flight.FlightCallOptions(headers=[token])
    descriptor = flight.FlightDescriptor.for_command(sql.encode())
    writer, reader = client.do_exchange(descriptor, options=options)
    return client, writer, reader


def next_message(reader):
    chunk = reader.read_chunk()
    return event(chunk.app_metadata), chunk.data


def test_plain_pyarrow_reads_snapshot_and_changes(server, conn, ns):
    run(conn, f"CREATE TABLE {ns}.t (id BIGINT PRIMARY KEY, v BIGINT, note TEXT)")
    run(conn, f"INSERT INTO {ns}.t VALUES (1, 1, 'a'), (2, 5, 'b'), (3, 9, 'c')")
    client, writer, reader = subscribe(server, f"SUBSCRIBE TO SELECT id, v FROM {ns}.t WHERE v > 2")
    assert reader.schema.names == ["id", "v", "_seq", "_op"]
    assert reader.schema.field("_op").type == pa.int8()
    ack, data = next_message(reader)
    assert ack["kind"] == "ACK" and data is None and ack["subscription_id"].startswith("LQ-")
    rows = []
    while True:
        ev, data = next_message(reader)
        if ev["kind"] == "INITIAL_DONE":
            assert data is None and ev["last_seq"] > 0
            break
        assert ev["kind"] == "INITIAL"
        rows += data.to_pylist()
    assert [(r["id"], r["_op"]) for r in rows] == [(2, 0), (3, 0)]
    seqs = [r["_seq"] for r in rows]
    assert seqs == sorted(seqs)

    run(conn, f"INSERT INTO {ns}.t VALUES (4, 7, 'd')")
    run(conn, f"UPDATE {ns}.t SET v = 0 WHERE id = 2")
    run(conn, f"DELETE FROM {ns}.t WHERE id = 3")
    changes = []
    last = 0
    while len(changes) < 3:
        ev, data = next_message(reader)
        assert ev["kind"] == "CHANGE", ev
        changes += data.to_pylist()
        assert ev["last_seq"] >= last
        last = ev["last_seq"]
    assert [(r["id"], r["_op"]) for r in changes] == [(4, 1), (2, 3), (3, 3)]
    assert changes[2]["v"] == 9, "a delete carries the row as it was"
    assert last == changes[-1]["_seq"]

    # KILL LIVE QUERY ends it with CLOSED killed.
    run(conn, f"KILL LIVE QUERY '{ack['subscription_id']}'")
    ev, data = next_message(reader)
    assert (ev["kind"], ev["code"]) == ("CLOSED", "killed")
    writer.close()
    client.close()


def test_subscription_errors_are_grpc_errors(server, conn, ns):
    run(conn, f"CREATE TABLE {ns}.t (id BIGINT PRIMARY KEY)")
    client = flight.FlightClient(server.flight_url)
    token = client.authenticate_basic_token(b"root", b"")
    options = flight.FlightCallOptions(headers=[token])
    for sql in [f"SUBSCRIBE TO SELECT count(*) FROM {ns}.t", f"SUBSCRIBE TO {ns}.t ORDER BY id"]:
        writer, reader = client.do_exchange(flight.FlightDescriptor.for_command(sql.encode()),
                                            options=options)
        # INVALID_ARGUMENT, which pyarrow raises as ArrowInvalid, saying what is not allowed.
        try:
            reader.read_chunk()
            raise AssertionError(f"{sql}: no error")
        except pa.ArrowInvalid as e:
            assert "subscription" in str(e), str(e)
    client.close()


def read_snapshot(reader):
    """ACK, INITIAL batches, INITIAL_DONE: the snapshot's rows."""
    ack, _ = next_message(reader)
    assert ack["kind"] == "ACK", ack
    rows = []
    while True:
        ev, data = next_message(reader)
        if ev["kind"] == "INITIAL_DONE":
            return rows
        assert ev["kind"] == "INITIAL", ev
        rows += data.to_pylist()


def next_change(reader):
    while True:
        ev, data = next_message(reader)
        if ev["kind"] != "HEARTBEAT":
            assert ev["kind"] == "CHANGE", ev
            return data.to_pylist()


def test_parameters_come_as_a_pyarrow_batch(server, conn, ns):
    run(conn, f"CREATE TABLE {ns}.t (id BIGINT PRIMARY KEY, v BIGINT, note TEXT)")
    run(conn, f"INSERT INTO {ns}.t VALUES (1, 1, 'a'), (2, 5, 'b'), (3, 9, 'c')")
    client, writer, reader = subscribe(
        server, f"SUBSCRIBE TO {ns}.t WHERE v > $1 AND note <> $2 OPTIONS (batch_size = 1)")
    params = pa.record_batch([pa.array([2], pa.int64()), pa.array(["c"])], names=["1", "2"])
    writer.begin(params.schema)
    writer.write_batch(params)
    assert [(r["id"], r["_op"]) for r in read_snapshot(reader)] == [(2, 0)]
    run(conn, f"INSERT INTO {ns}.t VALUES (4, 7, 'd'), (5, 8, 'e'), (6, 0, 'f')")
    # batch_size = 1: one row a message, in commit order.
    assert [r["id"] for r in next_change(reader)] == [4]
    assert [r["id"] for r in next_change(reader)] == [5]
    writer.close()
    client.close()


def test_users_see_only_their_rows_and_the_stream_ends_after_closed(server, conn, ns):
    run(conn, f"CREATE USER TABLE {ns}.inbox (id BIGINT PRIMARY KEY, body TEXT)")
    for user in ("ann", "bob"):
        run(conn, f"CREATE USER {user} WITH PASSWORD 'pw-{user}-secret'")
        run(conn, f"EXECUTE AS USER '{user}' (INSERT INTO {ns}.inbox VALUES (1, 'hello {user}'))")
    _, ann_w, ann = subscribe(server, f"SUBSCRIBE TO {ns}.inbox", b"ann", b"pw-ann-secret")
    _, bob_w, bob = subscribe(server, f"SUBSCRIBE TO {ns}.inbox", b"bob", b"pw-bob-secret")
    assert [r["body"] for r in read_snapshot(ann)] == ["hello ann"]
    assert [r["body"] for r in read_snapshot(bob)] == ["hello bob"]
    # Same key, other user: bob's subscription hears nothing of ann's writes, deletes included.
    run(conn, f"EXECUTE AS USER 'ann' (DELETE FROM {ns}.inbox WHERE id = 1)")
    run(conn, f"EXECUTE AS USER 'bob' (INSERT INTO {ns}.inbox VALUES (2, 'second'))")
    assert [(r["id"], r["_op"]) for r in next_change(ann)] == [(1, 3)]
    assert [(r["id"], r["_op"], r["body"]) for r in next_change(bob)] == [(2, 1, "second")]
    # DROP TABLE: CLOSED table_dropped, then the stream ends.
    run(conn, f"DROP TABLE {ns}.inbox")
    for reader in (ann, bob):
        ev, data = next_message(reader)
        assert (ev["kind"], ev["code"], data) == ("CLOSED", "table_dropped", None), ev
        try:
            reader.read_chunk()
            raise AssertionError("the stream goes on after CLOSED")
        except StopIteration:
            pass
    ann_w.close()
    bob_w.close()
