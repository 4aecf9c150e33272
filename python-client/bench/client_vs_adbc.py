"""The `quilldb` client beside the ADBC Flight SQL driver, in one run against one server.

    python-client/.venv/bin/python python-client/bench/client_vs_adbc.py [--calls N] [--rows N]

Starts the release `quilldb` binary (QUILLDB_BIN, else $CARGO_TARGET_DIR/release/quilldb) on
port 0 in a temp dir and measures, for each client: single-row INSERT with parameters (calls/s,
client and server CPU per call), primary-key lookups with a parameter (p50/p99 latency), and the
ingest of N rows of 4 columns (rows/s; the clients alternate, each run after the server's
jobs are idle, and the median run counts). Server CPU comes from /proc/<pid>/stat. Prints one table
and writes benches/results/<time>-python-client.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import pyarrow as pa

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python-client" / "tests"))

import quilldb  # noqa: E402
from conftest import Server  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def server_cpu(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measure(name, pid, calls, fn):
    fn(-1)
    lat = []
    s0, c0, w0 = server_cpu(pid), time.process_time(), time.perf_counter()
    for i in range(calls):
        t = time.perf_counter()
        fn(i)
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - w0
    client, server = time.process_time() - c0, server_cpu(pid) - s0
    lat.sort()
    row = {
        "name": name,
        "calls": calls,
        "per_s": calls / wall,
        "p50_ms": lat[len(lat) // 2] * 1e3,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1e3,
        "client_cpu_ms": client / calls * 1e3,
        "server_cpu_ms": server / calls * 1e3,
    }
    print(f"{name:28s} {row['per_s']:9.0f}/s  p50 {row['p50_ms']:6.3f} ms  p99 {row['p99_ms']:6.3f} ms"
          f"  client {row['client_cpu_ms']:.3f} ms  server {row['server_cpu_ms']:.3f} ms", flush=True)
    return row


def ingest_rows(n: int) -> pa.Table:
    ids = pa.array(range(n), pa.int64())
    return pa.table({
        "id": ids,
        "a": pa.array(range(0, 2 * n, 2), pa.int64()),
        "b": pa.array([i * 0.5 for i in range(n)], pa.float64()),
        "s": pa.array([f"row-{i:08d}" for i in range(n)]),
    })


def timed_ingest(name, pid, fn, rows):
    s0, w0 = server_cpu(pid), time.perf_counter()
    fn()
    wall = time.perf_counter() - w0
    row = {"name": name, "rows": rows, "rows_per_s": rows / wall, "seconds": wall,
           "server_cpu_s": server_cpu(pid) - s0}
    print(f"{name:28s} {row['rows_per_s']:9.0f} rows/s  {wall:.2f} s  server cpu {row['server_cpu_s']:.2f} s",
          flush=True)
    return row


def idle(db, limit: float = 120.0) -> None:
    """Waits until no job is queued or running."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        busy = db.query("SELECT count(*) FROM system.jobs WHERE status IN ('queued', 'running')")
        if busy.column(0)[0].as_py() == 0:
            return
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3, help="ingest runs of each client, alternating")
    args = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    os.environ.setdefault("QUILLDB_BIN", f"{target}/release/quilldb")
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(pathlib.Path(tmp))
        pid = server.proc.pid
        try:
            db = quilldb.connect(server.flight_url)
            adbc = quilldb.adbc_connect(server.flight_url)
            cur = adbc.cursor()
            db.execute("CREATE NAMESPACE bench")
            for t in ("q", "a"):
                db.execute(f"CREATE TABLE bench.{t} (id BIGINT PRIMARY KEY, a BIGINT, b DOUBLE, s TEXT)")
            insert = "INSERT INTO bench.{} (id, a, b, s) VALUES ($1, $2, $3, $4)"
            lookup = "SELECT * FROM bench.{} WHERE id = $1"
            n = args.calls
            print(f"quilldb {quilldb.__version__} vs ADBC Flight SQL, {n} calls each", flush=True)
            rows = [
                measure("insert 1 row: adbc", pid, n,
                        lambda i: cur.execute(insert.format("a"), (i, i, 0.5, "x"))),
                measure("insert 1 row: quilldb", pid, n,
                        lambda i: db.execute(insert.format("q"), [i, i, 0.5, "x"])),
            ]

            def adbc_lookup(i):
                cur.execute(lookup.format("a"), (i % n,))
                cur.fetch_arrow_table()

            rows.append(measure("pk lookup: adbc", pid, n, adbc_lookup))
            rows.append(measure("pk lookup: quilldb", pid, n,
                                lambda i: db.query(lookup.format("q"), [i % n])))
            data = ingest_rows(args.rows)
            ingest = {"adbc": [], "quilldb": []}
            for rep in range(args.reps):
                for client in ("adbc", "quilldb"):
                    table = f"i{client[0]}{rep}"
                    db.execute(f"CREATE TABLE bench.{table} (id BIGINT PRIMARY KEY, a BIGINT, b DOUBLE, s TEXT)")
                    idle(db)  # flushes started by the previous run would bill this one
                    if client == "adbc":
                        # The driver sends each batch as one message: below gRPC's 16 MiB.
                        reader = pa.RecordBatchReader.from_batches(
                            data.schema, data.to_batches(max_chunksize=100_000))
                        run = lambda: cur.adbc_ingest(table, reader, mode="append", db_schema_name="bench")  # noqa: E731
                    else:
                        run = lambda: db.ingest(f"bench.{table}", data)  # noqa: E731
                    ingest[client].append(timed_ingest(f"ingest {args.rows} rows: {client}", pid, run, args.rows))
                    count = db.query(f"SELECT count(*) FROM bench.{table}").column(0)[0].as_py()
                    assert count == args.rows, count
            for client in ("adbc", "quilldb"):
                runs = sorted(ingest[client], key=lambda r: r["rows_per_s"])
                median = dict(runs[len(runs) // 2], name=f"ingest {args.rows} rows (median): {client}")
                rows.append(median)
            by = {r["name"].split(":")[0]: {} for r in rows}
            for r in rows:
                kind, client = r["name"].split(": ")
                by[kind][client] = r
            ratios = {
                "insert_rate_x": by["insert 1 row"]["quilldb"]["per_s"] / by["insert 1 row"]["adbc"]["per_s"],
                "pk_p50_ms": by["pk lookup"]["quilldb"]["p50_ms"],
                "ingest_rate_x": rows[-1]["rows_per_s"] / rows[-2]["rows_per_s"],
            }
            print(f"quilldb/adbc: insert rate {ratios['insert_rate_x']:.2f}x, pk p50 "
                  f"{ratios['pk_p50_ms']:.3f} ms, ingest rate {ratios['ingest_rate_x']:.2f}x")
            cur.close()
            adbc.close()
            db.close()
        finally:
            server.stop()
    out = ROOT / "benches" / "results" / (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-python-client.json")
    out.write_text(json.dumps({"calls": args.calls, "rows": args.rows, "results": rows, "ingest_runs": ingest,
                               "summary": ratios}, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
