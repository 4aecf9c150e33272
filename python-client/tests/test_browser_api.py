"""The browser API on the HTTP port (docs/browser-api.md), as any HTTP client sees it: login,
statements answered as Arrow IPC streams, errors as gRPC code names, the catalog, and
subscriptions over a WebSocket carrying DoExchange's frames."""

import base64
import struct
import urllib.error
import urllib.request

import pyarrow as pa
import pytest
from websockets.sync.client import connect as ws_connect

from quilldb import _proto

from conftest import Server


def http(server, method, path, body=None, headers=None):
    req = urllib.request.Request(server.http_url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def login(server, user="root", password=""):
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    status, headers, body = http(server, "POST", "/v1/login", headers={"Authorization": f"Basic {basic}"})
    assert status == 200, body
    token = body.decode().strip()
    assert headers["authorization"] == f"Bearer {token}"
    return token


def run(server, token, sql):
    return http(
        server, "POST", "/v1/statements", sql.encode(), {"Authorization": f"Bearer {token}"}
    )


def table(body) -> pa.Table:
    return pa.ipc.open_stream(body).read_all()


def test_statements_answer_arrow_and_errors_answer_code_names(server, ns):
    token = login(server)
    status, headers, body = run(server, token, f"CREATE TABLE {ns}.t (id BIGINT PRIMARY KEY, body TEXT)")
    assert status == 200
    assert headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert table(body).column("rows_affected").to_pylist() == [0]
    status, _, body = run(server, token, f"INSERT INTO {ns}.t VALUES (1, 'a'), (2, NULL)")
    assert table(body).column("rows_affected").to_pylist() == [2]
    status, _, body = run(server, token, f"SELECT * FROM {ns}.t ORDER BY id")
    t = table(body)
    assert t.column_names == ["id", "body", "_seq"]
    assert t.column("body").to_pylist() == ["a", None]
    # No view types on the wire, the same schema as Flight's.
    assert t.schema.field("body").type == pa.string()

    cases = [
        (f"SELECT nope FROM {ns}.t", 404, "NOT_FOUND"),
        ("SELEC 1", 400, "INVALID_ARGUMENT"),
        (f"INSERT INTO {ns}.t VALUES (1, 'again')", 409, "ALREADY_EXISTS"),
    ]
    for sql, code, name in cases:
        status, headers, body = run(server, token, sql)
        assert (status, headers["x-quilldb-code"]) == (code, name), body
        assert headers["content-type"].startswith("text/plain")
        assert b"{" not in body[:1]
    # Nothing of the refused insert was written.
    _, _, body = run(server, token, f"SELECT count(*) AS n FROM {ns}.t")
    assert table(body).column("n").to_pylist() == [2]


def test_a_failure_after_the_first_rows_ends_with_an_error_stream(server):
    token = login(server)
    # The cast fails only in a later batch of the series, after rows were sent.
    sql = (
        "SELECT CAST(CAST(value AS VARCHAR) || CASE WHEN value > 50000 THEN 'x' ELSE '' END AS BIGINT) AS v "
        "FROM generate_series(1, 60000)"
    )
    req = urllib.request.Request(
        server.http_url + "/v1/statements", data=sql.encode(), method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )
    got = bytearray()
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
        # The body breaks off after the error stream: a reader of the result alone cannot
        # mistake it for a complete answer.
        with pytest.raises(Exception):
            while chunk := resp.read1(1 << 16):
                got += chunk
    # The result stream (some rows, then its end), then a second stream: the error.
    buf = pa.BufferReader(bytes(got))
    sent = sum(b.num_rows for b in pa.ipc.open_stream(buf))
    assert 0 < sent < 60000
    error = pa.ipc.open_stream(buf).read_all()
    assert error.schema.metadata == {b"quilldb.error": b"1"}
    assert error.column("code").to_pylist() == ["INVALID_ARGUMENT"]
    assert "x" in error.column("message")[0].as_py()


def test_login_and_tokens(server):
    status, headers, _ = http(server, "POST", "/v1/login", headers={"Authorization": "Basic " + base64.b64encode(b"root:wrong").decode()})
    assert (status, headers["x-quilldb-code"]) == (401, "UNAUTHENTICATED")
    status, headers, _ = run(server, "not-a-token", "SELECT 1")
    assert (status, headers["x-quilldb-code"]) == (401, "UNAUTHENTICATED")
    status, _, body = http(server, "POST", "/v1/statements", b"SELECT 1")
    assert status == 401 and b"POST /v1/login" in body
    token = login(server)
    assert run(server, token, "SELECT 1")[0] == 200
    assert http(server, "POST", "/v1/logout", headers={"Authorization": f"Bearer {token}"})[0] == 204
    assert run(server, token, "SELECT 1")[0] == 401


def test_the_catalog_is_one_request(server, ns):
    token = login(server)
    run(server, token, f"CREATE USER TABLE {ns}.notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
    run(server, token, f"CREATE STREAM TABLE {ns}.typing (id BIGINT PRIMARY KEY) WITH (TTL_SECONDS = 30)")
    run(server, token, f"CREATE VIEW {ns}.v AS SELECT id FROM {ns}.notes")
    status, _, body = http(server, "GET", "/v1/catalog", headers={"Authorization": f"Bearer {token}"})
    assert status == 200
    rows = table(body).to_pylist()
    mine = [r for r in rows if r["namespace"] == ns]
    kinds = {(r["table_name"], r["table_type"]) for r in mine}
    assert kinds == {("notes", "USER"), ("typing", "STREAM"), ("v", "VIEW")}
    body_col = next(r for r in mine if r["column_name"] == "body")
    assert (body_col["data_type"], body_col["is_nullable"], body_col["is_primary_key"]) == ("TEXT", False, False)
    assert any(r["table_type"] == "SYSTEM" for r in rows)


def frames(ws):
    """(event or None, IPC message bytes) per server message."""
    while True:
        msg = ws.recv(timeout=10)
        (n,) = struct.unpack_from("<I", msg)
        event = _proto.subscription_event(msg[4:4 + n]) if n else None
        yield event, msg[4 + n:]


def rows(schema_message: bytes, message: bytes) -> pa.Table:
    return pa.ipc.open_stream(schema_message + message).read_all()


def test_a_websocket_subscription_carries_doexchange_frames(server, ns):
    token = login(server)
    run(server, token, f"CREATE TABLE {ns}.m (id BIGINT PRIMARY KEY, room TEXT)")
    run(server, token, f"INSERT INTO {ns}.m VALUES (1, 'a'), (2, 'b')")
    ws_url = server.http_url.replace("http://", "ws://") + "/v1/subscriptions"
    with ws_connect(ws_url) as ws:
        ws.send(f"Bearer {token}")
        ws.send(f"SUBSCRIBE TO {ns}.m WHERE room = $1")
        params = pa.record_batch([pa.array(["a"])], names=["$1"])
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, params.schema) as w:
            w.write_batch(params)
        ws.send(sink.getvalue().to_pybytes())
        it = frames(ws)
        event, schema_message = next(it)
        assert event is None
        assert pa.ipc.read_schema(pa.py_buffer(schema_message)).names == ["id", "room", "_seq", "_op"]
        kinds = []
        snapshot = []
        while True:
            event, ipc = next(it)
            kinds.append(event[0])
            if ipc:
                snapshot += rows(schema_message, ipc).column("id").to_pylist()
            if event[0] == "initial_done":
                break
        assert kinds[0] == "ack"
        assert snapshot == [1]
        live_id = event[1]
        assert live_id
        run(server, token, f"INSERT INTO {ns}.m VALUES (3, 'a'), (4, 'b')")
        event, ipc = next(it)
        assert event[0] == "change"
        change = rows(schema_message, ipc)
        assert change.column("id").to_pylist() == [3]
        assert change.column("_op").to_pylist() == [1]
        # KILL LIVE QUERY ends it with CLOSED killed.
        run(server, token, f"KILL LIVE QUERY '{live_id}'")
        while True:
            event, _ = next(it)
            if event[0] in ("closed", "error"):
                break
        assert (event[0], event[3]) == ("closed", "killed")


def test_a_refused_subscription_answers_an_error_event(server):
    ws_url = server.http_url.replace("http://", "ws://") + "/v1/subscriptions"
    with ws_connect(ws_url) as ws:
        ws.send("Bearer nope")
        event, _ = next(frames(ws))
        assert (event[0], event[3]) == ("error", "UNAUTHENTICATED")
    token = login(server)
    with ws_connect(ws_url) as ws:
        ws.send(f"Bearer {token}")
        ws.send("SUBSCRIBE TO nowhere.nothing")
        event, _ = next(frames(ws))
        assert (event[0], event[3]) == ("error", "NOT_FOUND")
    # A page of another origin may not open one.
    with pytest.raises(Exception):
        with ws_connect(ws_url, origin="https://elsewhere.example"):
            pass


def test_cors_is_closed_unless_an_origin_is_configured(tmp_path):
    s = Server(tmp_path, args=())
    try:
        status, headers, _ = http(s, "OPTIONS", "/v1/statements", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
        assert status == 403 and "access-control-allow-origin" not in {k.lower() for k in headers}
    finally:
        s.stop()
    import os
    os.environ["QUILLDB_SERVER__CORS_ALLOWED_ORIGINS"] = '["https://app.example"]'
    (tmp_path / "2").mkdir()
    try:
        s = Server(tmp_path / "2")
    finally:
        del os.environ["QUILLDB_SERVER__CORS_ALLOWED_ORIGINS"]
    try:
        status, headers, _ = http(s, "OPTIONS", "/v1/statements", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
        assert status == 204
        assert headers["access-control-allow-origin"] == "https://app.example"
        status, headers, _ = http(s, "OPTIONS", "/v1/statements", headers={
            "Origin": "https://other.example", "Access-Control-Request-Method": "POST"})
        assert status == 403
    finally:
        s.stop()


def test_an_oversized_statement_is_refused_and_the_server_serves_on(server):
    token = login(server)
    status, headers, _ = run(server, token, "SELECT '" + "x" * (3 << 20) + "'")
    assert (status, headers["x-quilldb-code"]) == (429, "RESOURCE_EXHAUSTED")
    status, _, body = run(server, token, "SELECT 1 AS one")
    assert status == 200 and table(body).column("one").to_pylist() == [1]
