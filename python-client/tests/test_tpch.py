"""TPC-H at scale factor 0.01: tpchgen's data loaded as written (tables without a primary key,
CHAR(n), DECIMAL(15,2), DATE) through ADBC ingest, the 22 queries answered as DuckDB answers
them (committed in benches/tpch/answers/sf0.01), as loaded and after a flush. No timing here: the
benchmark (`quilldb-bench --only tpch`) measures."""

import pathlib
import sys

import pytest

from test_cold import flush
from wire import run

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches" / "tpch"))

import tpch  # noqa: E402

ANSWERS = ROOT / "benches" / "tpch" / "answers" / "sf0.01"


@pytest.fixture(scope="module")
def loaded(server, tmp_path_factory):
    import adbc_driver_flightsql.dbapi as flight_sql

    data = tpch.generate(0.01, tmp_path_factory.mktemp("tpch"))
    conn = flight_sql.connect(server.flight_url, db_kwargs={"username": "root", "password": ""})
    rows = tpch.load(conn, data)
    assert rows["lineitem"] == 60175
    yield conn
    conn.close()


def answers(conn, stage):
    wrong = []
    for name, sql in tpch.queries().items():
        table = run(conn, sql)
        got = tpch.normalize(zip(*(c.to_pylist() for c in table.columns)))
        want = tpch.read_answer(ANSWERS / f"{name}.tsv")
        diff = tpch.same(got, want)
        if diff:
            wrong.append(f"{name} ({stage}): {diff}")
    assert not wrong, "\n".join(wrong)


def test_tpch_answers_hot_then_cold(loaded):
    # As loaded: hot, but for what the default flush policy moved already.
    answers(loaded, "as loaded")
    for t in tpch.TABLES:
        flush(loaded, f"tpch.{t}", ends=("completed", "skipped"), limit=120)
    counts = run(loaded, "SELECT count(*) AS n FROM tpch.lineitem").column("n")[0].as_py()
    assert counts == 60175
    answers(loaded, "cold")
