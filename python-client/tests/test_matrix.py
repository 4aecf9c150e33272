"""The permission matrix of spec/security.md through the stock ADBC Flight SQL driver: the cells
of tests/data/matrix.tsv (the file tests/matrix.rs runs over raw Flight SQL), every role, allowed
and denied."""

import pathlib

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa
import pytest

from conftest import Server

MATRIX = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "matrix.tsv"
ROLES = ["anonymous", "user", "service", "dba", "system"]
PASSWORD = "matrix-password"
# The driver's status for each gRPC code the matrix names.
ADBC_STATUS = {
    "OK": "OK",
    "PERMISSION_DENIED": "UNAUTHORIZED",
    "NOT_FOUND": "NOT_FOUND",
    "UNIMPLEMENTED": "NOT_IMPLEMENTED",
}


def rows():
    out = []
    for line in MATRIX.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split("\t")
        out.append({
            "kind": f[0],
            "call": f[1],
            "text": f[2],
            "allowed": f[3].split(",") if len(f) > 3 else [],
            "code": f[4] if len(f) > 4 else "OK",
        })
    return out


def expand(text, rank, data):
    role = ROLES[rank]
    return (text.replace("{r}", role)
            .replace("{data}", str(data))
            .replace("{me}", f"m_{role}")
            .replace("{n}", str(100 + rank)))


def run(conn, call, text, rank):
    cur = conn.cursor()
    try:
        if call == "sql":
            cur.execute(text)
            cur.fetch_arrow_table()
        elif call == "prepare":
            cur.adbc_prepare(text)
            cur.execute(text)
            if text.startswith("SELECT"):
                cur.fetch_arrow_table()
        elif call == "ingest":
            ns, table = text.split(".", 1)
            data = pa.table({
                "id": pa.array([1000 + rank], pa.int64()),
                "v": pa.array(["ingested"], pa.string()),
            })
            cur.adbc_ingest(table, data, mode="append", db_schema_name=ns)
        else:
            raise AssertionError(f"unknown call {call}")
        return "OK", ""
    except adbc_driver_manager.Error as e:
        return e.status_code.name, str(e).splitlines()[0]
    finally:
        cur.close()


@pytest.fixture()
def matrix_server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.stop()


def test_every_cell_of_the_permission_matrix_holds_through_adbc(matrix_server):
    url = matrix_server.flight_url
    matrix = rows()
    root = flight_sql.connect(url, db_kwargs={"username": "root", "password": ""},
                              autocommit=True)
    for row in (r for r in matrix if r["kind"] == "setup"):
        texts = ([expand(row["text"], k, matrix_server.data_dir)
                  for k in range(len(ROLES))]
                 if "{r}" in row["text"] else [row["text"]])
        for text in texts:
            status, message = run(root, "sql", text, 0)
            assert status == "OK", f"setup {text}: {message}"
    conns = []
    for role in ROLES:
        if role == "anonymous":
            conns.append(flight_sql.connect(url, autocommit=True))
        else:
            conns.append(flight_sql.connect(
                url, db_kwargs={"username": f"m_{role}", "password": PASSWORD},
                autocommit=True))
    wrong = []
    cells = 0
    try:
        for row in (r for r in matrix if r["kind"] == "cell"):
            for rank, role in enumerate(ROLES):
                text = expand(row["text"], rank, matrix_server.data_dir)
                want = row["code"] if role in row["allowed"] else "PERMISSION_DENIED"
                got, message = run(conns[rank], row["call"], text, rank)
                cells += 1
                if got != ADBC_STATUS[want]:
                    wrong.append(f"{role:9} {row['call']} {text}: expected {want}, "
                                 f"got {got} {message}")
    finally:
        for c in conns + [root]:
            c.close()
    assert cells >= 300
    assert not wrong, f"{len(wrong)} of {cells} cells differ:\n" + "\n".join(wrong)
