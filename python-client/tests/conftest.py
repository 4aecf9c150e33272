"""Starts the real quilldb binary on port 0 in a temp dir for the Python tests."""

import os
import pathlib
import subprocess
import time
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def quilldb_binary() -> str:
    env = os.environ.get("QUILLDB_BIN")
    if env:
        return env
    for profile in ("debug", "release"):
        for target in (os.environ.get("CARGO_TARGET_DIR"), str(ROOT / "target")):
            if target:
                candidate = pathlib.Path(target) / profile / "quilldb"
                if candidate.exists():
                    return str(candidate)
    raise RuntimeError("quilldb binary not found: build it or set QUILLDB_BIN")


class Server:
    def __init__(self, data_dir: pathlib.Path, flight_addr: str = "127.0.0.1:0", args=()):
        self.log_path = data_dir / "server.log"
        self.data_dir = data_dir / "data"
        env = dict(os.environ)
        env.pop("QUILLDB_ROOT_PASSWORD", None)
        self.proc = subprocess.Popen(
            [
                quilldb_binary(), "serve",
                "--data-dir", str(data_dir / "data"),
                "--flight-addr", flight_addr,
                "--http-addr", "127.0.0.1:0",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=open(self.log_path, "ab"),
            env=env,
            text=True,
        )
        deadline = time.time() + 60
        self.flight_url = self.http_url = None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("quilldb ready: "):
                parts = dict(p.split("=", 1) for p in line.split()[2:])
                self.flight_url = parts["flight"]
                self.http_url = parts["http"]
                break
        if self.flight_url is None:
            self.proc.kill()
            raise RuntimeError("server did not start:\n" + self.log_path.read_text())

    def stop(self):
        self.proc.terminate()
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("quilldb"))
    yield s
    if s.proc.poll() is None:
        s.stop()


@pytest.fixture()
def connect(server):
    """Opens ADBC DB-API connections as root; closes them after the test."""
    import adbc_driver_flightsql.dbapi as flight_sql

    opened = []

    def open_one(autocommit: bool = True):
        c = flight_sql.connect(
            server.flight_url,
            db_kwargs={"username": "root", "password": ""},
            autocommit=autocommit,
        )
        opened.append(c)
        return c

    yield open_one
    for c in opened:
        c.close()


@pytest.fixture()
def conn(connect):
    """An autocommit ADBC connection."""
    return connect(autocommit=True)


@pytest.fixture()
def ns(conn):
    """A fresh namespace for one test."""
    name = "t_" + uuid.uuid4().hex[:12]
    cur = conn.cursor()
    cur.execute(f"CREATE NAMESPACE {name}")
    cur.close()
    return name
