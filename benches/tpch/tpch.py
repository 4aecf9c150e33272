"""TPC-H for QuillDB: data from tpchgen-cli, the schema without keys, the 22 queries, and answers
compared the way the benchmark and the test command compare them (rows sorted, numbers rounded to
2 places, dates as ISO text).

Used by python-client/tests/test_tpch.py (scale factor 0.01 against committed DuckDB answers) and
by `quilldb-bench --only tpch` (which runs `tpch.py duckdb` for DuckDB's times and answers).

    python benches/tpch/tpch.py answers --sf 0.01 --out benches/tpch/answers/sf0.01
    python benches/tpch/tpch.py duckdb --data DIR --repeat 3 --out DIR/duckdb
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import pathlib
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
TABLES = ["region", "nation", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]


def queries() -> dict[str, str]:
    """`q1`..`q22` to their text (the comment lines dropped)."""
    out = {}
    for n in range(1, 23):
        text = (HERE / "queries" / f"q{n}.sql").read_text()
        out[f"q{n}"] = "\n".join(l for l in text.splitlines() if not l.startswith("--")).strip()
    return out


def schema_statements() -> list[str]:
    text = "\n".join(l for l in (HERE / "schema.sql").read_text().splitlines() if not l.startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def tpchgen() -> str:
    """The tpchgen-cli next to this Python (the test venv's), else the one on PATH."""
    beside = pathlib.Path(sys.executable).parent / "tpchgen-cli"
    if beside.exists():
        return str(beside)
    found = shutil.which("tpchgen-cli")
    if not found:
        raise RuntimeError("tpchgen-cli not found: pip install tpchgen-cli")
    return found


def generate(sf: float, out: pathlib.Path) -> pathlib.Path:
    """tpchgen's Parquet files of the 8 tables at scale factor `sf` in `out` (kept if present)."""
    out.mkdir(parents=True, exist_ok=True)
    if not all((out / f"{t}.parquet").exists() for t in TABLES):
        subprocess.run(
            [tpchgen(), "-s", str(sf), "--format", "parquet", "-o", str(out)],
            check=True,
        )
    return out


def load(conn, data: pathlib.Path) -> dict[str, int]:
    """Creates the schema and ingests every table through ADBC (CommandStatementIngest)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {}
    with conn.cursor() as cur:
        for stmt in schema_statements():
            cur.execute(stmt)
            cur.fetchall()
        for t in TABLES:
            table = pq.read_table(data / f"{t}.parquet")
            rows[t] = 0
            # One call carries at most limits.max_rows_per_insert rows (1,000,000 by default).
            # and gRPC messages stay small (the driver sends each record batch as one).
            for at in range(0, table.num_rows, 1_000_000):
                part = pa.Table.from_batches(table.slice(at, 1_000_000).to_batches(max_chunksize=65_536))
                rows[t] += cur.adbc_ingest(t, part, mode="append", db_schema_name="tpch")
    conn.commit()
    return rows


def normalize_value(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float, decimal.Decimal)):
        return f"{float(v):.2f}"
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    return str(v).rstrip()


def normalize(rows) -> list[list[str]]:
    """Rows as sorted lists of text, numbers with 2 decimals."""
    return sorted([normalize_value(v) for v in r] for r in rows)


def same(got: list[list[str]], want: list[list[str]]) -> str | None:
    """`None` if equal; numbers may differ by one in the last place (2-place rounding of a
    decimal and of a double can fall either side of a half)."""
    if len(got) != len(want):
        return f"{len(got)} rows, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        if len(g) != len(w):
            return f"row {i}: {len(g)} columns, expected {len(w)}"
        for a, b in zip(g, w):
            if a == b:
                continue
            try:
                if abs(float(a) - float(b)) <= 0.0101 + 1e-12 * abs(float(b)):
                    continue
            except ValueError:
                pass
            return f"row {i}: {g} != {w}"
    return None


def read_answer(path: pathlib.Path) -> list[list[str]]:
    """An answer file: a header line, then one line per row, values separated by tabs (TPC-H
    text holds no tab or newline)."""
    lines = path.read_text().split("\n")[1:]
    return [l.split("\t") for l in lines if l]


def write_answer(path: pathlib.Path, columns: list[str], rows: list[list[str]]):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join("\t".join(r) + "\n" for r in [columns, *rows])
    path.write_text(text)


def duckdb_connection(data: pathlib.Path):
    import duckdb

    con = duckdb.connect()
    con.execute("CREATE SCHEMA tpch")
    for t in TABLES:
        con.execute(f"CREATE VIEW tpch.{t} AS SELECT * FROM read_parquet('{data / (t + '.parquet')}')")
    return con


def run_duckdb(data: pathlib.Path, repeat: int, out: pathlib.Path | None):
    """DuckDB over tpchgen's files: each query's best time of `repeat` runs (printed as
    `name seconds`), its answer written to `out` if given."""
    con = duckdb_connection(data)
    for name, sql in queries().items():
        best = None
        for _ in range(max(repeat, 1)):
            t0 = time.perf_counter()
            cur = con.execute(sql)
            rows = cur.fetchall()
            took = time.perf_counter() - t0
            best = took if best is None else min(best, took)
        if out is not None:
            write_answer(out / f"{name}.tsv", [d[0] for d in cur.description], normalize(rows))
        print(f"{name} {best:.6f}", flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("answers", help="DuckDB's answers at a scale factor, for the test command")
    a.add_argument("--sf", type=float, default=0.01)
    a.add_argument("--out", type=pathlib.Path, required=True)
    a.add_argument("--data", type=pathlib.Path)
    d = sub.add_parser("duckdb", help="DuckDB's times (and answers) over tpchgen's files")
    d.add_argument("--data", type=pathlib.Path, required=True)
    d.add_argument("--repeat", type=int, default=3)
    d.add_argument("--out", type=pathlib.Path)
    args = p.parse_args()
    if args.cmd == "answers":
        data = generate(args.sf, args.data or pathlib.Path(f"/tmp/quilldb-tpch-sf{args.sf}"))
        run_duckdb(data, 1, args.out)
    else:
        run_duckdb(args.data, args.repeat, args.out)


if __name__ == "__main__":
    main()
