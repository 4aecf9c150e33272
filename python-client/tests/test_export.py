"""EXPORT USER DATA: one zip of a user's rows of every USER table (hot and cold), downloaded over
the HTTP port with the Flight login's token, read back with pyarrow."""

import io
import json
import urllib.error
import urllib.request
import uuid
import zipfile

import pyarrow.flight as flight
import pyarrow.parquet as pq

import quilldb


def token(server, user, password):
    client = flight.FlightClient(server.flight_url)
    _, value = client.authenticate_basic_token(user.encode(), password.encode())
    client.close()
    return value.decode().split(" ", 1)[1]


def get(server, path, bearer=None):
    req = urllib.request.Request(server.http_url + path)
    if bearer:
        req.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_a_users_export_equals_what_they_read(server, ns):
    root = quilldb.connect(server.flight_url)
    alice, bob = f"alice_{uuid.uuid4().hex[:6]}", f"bob_{uuid.uuid4().hex[:6]}"
    for u in (alice, bob):
        root.execute(f"CREATE USER {u} WITH PASSWORD 'pw-{u}-123' ROLE user")
    root.execute(f"CREATE USER TABLE {ns}.notes (id BIGINT PRIMARY KEY, body TEXT, score DOUBLE)")
    root.execute(f"CREATE USER TABLE {ns}.events (id BIGINT PRIMARY KEY, kind TEXT)")
    root.execute(f"CREATE TABLE {ns}.shared (id BIGINT PRIMARY KEY, v TEXT)")
    a = quilldb.connect(server.flight_url, user=alice, password=f"pw-{alice}-123")
    b = quilldb.connect(server.flight_url, user=bob, password=f"pw-{bob}-123")
    a.execute_many(f"INSERT INTO {ns}.notes VALUES ($1, $2, $3)", [[i, f"note {i}", i / 3] for i in range(500)])
    b.execute(f"INSERT INTO {ns}.notes VALUES (1, 'not alice', 0)")
    root.flush(f"{ns}.notes")
    # Hot changes on top of the cold rows: an update, a delete, new rows.
    a.execute(f"UPDATE {ns}.notes SET body = 'edited' WHERE id < 10")
    a.execute(f"DELETE FROM {ns}.notes WHERE id >= 490")
    a.execute(f"INSERT INTO {ns}.notes VALUES (1000, 'hot', 1.5)")
    a.execute(f"INSERT INTO {ns}.events VALUES (1, 'login'), (2, 'logout')")
    root.execute(f"INSERT INTO {ns}.shared VALUES (1, 'not exported')")

    job = a.query("EXPORT USER DATA").column(0)[0].as_py()
    # A user cannot read system.jobs: the download answers 409 until the export is ready.
    assert root.wait_job(job) == "completed"
    jobs = root.query(f"SELECT job_type, user_id, rows FROM system.jobs WHERE job_id = '{job}'").to_pylist()
    assert jobs[0]["job_type"] == "export" and jobs[0]["user_id"] == alice

    alice_token = token(server, alice, f"pw-{alice}-123")
    status, headers, body = get(server, f"/v1/exports/{job}", alice_token)
    assert status == 200, body
    assert headers["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(body))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["user"] == alice
    by_table = {t["table"]: t for t in manifest["tables"]}
    for table in (f"{ns}.notes", f"{ns}.events"):
        exported = pq.read_table(io.BytesIO(archive.read(by_table[table]["file"])))
        expected = root.query(f"EXECUTE AS USER '{alice}' (SELECT * FROM {table})")
        assert exported.num_rows == by_table[table]["rows"] == expected.num_rows
        assert exported.column_names == expected.column_names
        assert [f.type for f in exported.schema] == [f.type for f in expected.schema], table
        assert exported.sort_by("id").to_pylist() == expected.sort_by("id").to_pylist(), table
        assert [c["name"] for c in by_table[table]["columns"]] == expected.column_names
    assert f"{ns}.shared" not in by_table
    notes = pq.read_table(io.BytesIO(archive.read(by_table[f"{ns}.notes"]["file"])))
    assert notes.num_rows == 491 and "not alice" not in notes.column("body").to_pylist()

    # Only alice (and dba/system) may download it; a token is required.
    assert get(server, f"/v1/exports/{job}")[0] == 401
    assert get(server, f"/v1/exports/{job}", "not-a-token")[0] == 401
    assert get(server, f"/v1/exports/{job}", token(server, bob, f"pw-{bob}-123"))[0] == 404
    assert get(server, f"/v1/exports/{job}", token(server, "root", ""))[0] == 200
    # A user exports their own data only; root anyone's.
    try:
        b.query(f"EXPORT USER DATA '{alice}'")
        raise AssertionError("bob exported alice's data")
    except quilldb.errors.PermissionDenied as e:
        assert "only their own" in str(e)
    other = root.query(f"EXPORT USER DATA '{bob}'").column(0)[0].as_py()
    assert root.wait_job(other) == "completed"
    status, _, body = get(server, f"/v1/exports/{other}", token(server, bob, f"pw-{bob}-123"))
    assert status == 200
    notes = zipfile.ZipFile(io.BytesIO(body))
    files = [t["file"] for t in json.loads(notes.read("manifest.json"))["tables"] if t["table"] == f"{ns}.notes"]
    assert pq.read_table(io.BytesIO(notes.read(files[0]))).column("body").to_pylist() == ["not alice"]
    for c in (a, b, root):
        c.close()
