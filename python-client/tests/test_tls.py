"""TLS on both ports, with certificates the tests make: pyarrow.flight, the ADBC driver
(grpc+tls://), our client and the HTTP endpoints; client certificates; SIGHUP reloads; and the
clear failures of a plain-text client and of an untrusted certificate."""

import datetime
import ipaddress
import os
import signal
import subprocess
import ssl
import time
import urllib.error
import urllib.request

import pyarrow.flight as flight
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import quilldb
import wire
from conftest import Server, quilldb_binary


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Ca:
    """A certificate authority of the tests' own."""

    def __init__(self, name: str):
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, name: str, server: bool) -> tuple:
        """(certificate PEM, key PEM) for a server (localhost, 127.0.0.1) or a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def _write(path, cert_key):
    (path / "server.crt").write_bytes(cert_key[0])
    (path / "server.key").write_bytes(cert_key[1])


def _tls_server(tmp_path, ca, client_ca=None) -> Server:
    _write(tmp_path, ca.issue("quilldb-test", server=True))
    args = ["--tls-cert", str(tmp_path / "server.crt"), "--tls-key", str(tmp_path / "server.key")]
    if client_ca is not None:
        (tmp_path / "clients.pem").write_bytes(client_ca.pem)
        args += ["--tls-client-ca", str(tmp_path / "clients.pem")]
    return Server(tmp_path, args=args)


def _select_one(client: flight.FlightClient) -> int:
    options = flight.FlightCallOptions(headers=[client.authenticate_basic_token(b"root", b"")], timeout=10)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(wire.statement_query("SELECT 1 AS one")), options)
    return client.do_get(info.endpoints[0].ticket, options).read_all().column("one").to_pylist()[0]


def _https(url: str, cafile_pem: bytes) -> tuple:
    ctx = ssl.create_default_context(cadata=cafile_pem.decode())
    with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
        return r.status, r.read().decode()


@pytest.fixture()
def tls(tmp_path):
    ca = Ca("quilldb test CA")
    server = _tls_server(tmp_path, ca)
    yield server, ca
    server.stop()


def test_flight_sql_adbc_our_client_and_http_over_tls(tls):
    server, ca = tls
    assert server.flight_url.startswith("grpc+tls://127.0.0.1:")
    assert server.http_url.startswith("https://127.0.0.1:")
    # pyarrow.flight
    assert _select_one(flight.FlightClient(server.flight_url, tls_root_certs=ca.pem)) == 1
    # The ADBC driver.
    import adbc_driver_flightsql.dbapi as flight_sql
    from adbc_driver_flightsql import DatabaseOptions

    with flight_sql.connect(server.flight_url, db_kwargs={
            "username": "root", "password": "",
            DatabaseOptions.TLS_ROOT_CERTS.value: ca.pem.decode()}, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("CREATE NAMESPACE tls_ns")
        cur.execute("CREATE TABLE tls_ns.t (id BIGINT PRIMARY KEY, v TEXT)")
        cur.execute("INSERT INTO tls_ns.t VALUES ($1, $2)", (1, "over tls"))
        cur.execute("SELECT v FROM tls_ns.t")
        assert cur.fetch_arrow_table().column("v").to_pylist() == ["over tls"]
        cur.close()
    # Our client, including a subscription.
    with quilldb.connect(server.flight_url, tls_root_certs=ca.pem) as db:
        assert db.query("SELECT v FROM tls_ns.t").column("v").to_pylist() == ["over tls"]
        with db.subscribe("SUBSCRIBE TO tls_ns.t") as sub:
            rows = []
            for event in sub:
                if event.batch is not None:
                    rows += event.batch.column("v").to_pylist()
                if event.kind == "initial_done":
                    break
            assert rows == ["over tls"]
    # Our shell.
    (server.data_dir.parent / "ca.pem").write_bytes(ca.pem)
    shell = subprocess.run(
        [quilldb_binary(), "sql", "--url", server.flight_url, "--tls-ca", str(server.data_dir.parent / "ca.pem"),
         "--format", "csv", "-c", "SELECT v FROM tls_ns.t"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(server.data_dir.parent)})
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.splitlines() == ["v", "over tls"]
    # The HTTP endpoints.
    assert _https(server.http_url + "/health", ca.pem)[0] == 200
    status, metrics = _https(server.http_url + "/metrics", ca.pem)
    assert status == 200 and "quill_active_sessions" in metrics


def test_plain_text_and_untrusted_certificates_fail_clearly(tls):
    server, ca = tls
    port = server.flight_url.rsplit(":", 1)[1]
    # A plain-text gRPC client on the TLS port.
    with pytest.raises(flight.FlightUnavailableError) as err:
        _select_one(flight.FlightClient(f"grpc://127.0.0.1:{port}"))
    assert "accepts TLS connections only" in str(err.value) and "grpc+tls://" in str(err.value)
    with pytest.raises(quilldb.Unavailable) as err:
        quilldb.connect(f"grpc://127.0.0.1:{port}")
    assert "TLS connections only" in str(err.value)
    # A client that does not trust the server's CA.
    other = Ca("some other CA")
    with pytest.raises(flight.FlightUnavailableError) as err:
        list(flight.FlightClient(server.flight_url, tls_root_certs=other.pem).list_actions())
    assert "certificate verify failed" in str(err.value)
    with pytest.raises(quilldb.Unavailable) as err:
        quilldb.connect(server.flight_url, tls_root_certs=other.pem)
    assert "certificate verify failed" in str(err.value)
    # The ADBC driver says so too.
    import adbc_driver_flightsql.dbapi as flight_sql
    from adbc_driver_flightsql import DatabaseOptions

    with pytest.raises(Exception) as err:
        with flight_sql.connect(server.flight_url, db_kwargs={
                "username": "root", "password": "",
                DatabaseOptions.TLS_ROOT_CERTS.value: other.pem.decode()}) as conn:
            cur = conn.cursor()
            cur.execute("SELECT 1")
    assert "certificate" in str(err.value)
    # Plain HTTP to the HTTPS port, and HTTPS with the wrong CA.
    http_port = server.http_url.rsplit(":", 1)[1]
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=10).read()
    assert err.value.code == 400 and "https://" in err.value.read().decode()
    with pytest.raises(urllib.error.URLError) as err:
        _https(server.http_url + "/health", other.pem)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    # The server serves on.
    assert _select_one(flight.FlightClient(server.flight_url, tls_root_certs=ca.pem)) == 1
    assert "TLS handshake failed" in server.log_path.read_text()


def test_client_certificates_are_required_when_a_client_ca_is_set(tmp_path):
    ca, clients = Ca("server CA"), Ca("client CA")
    server = _tls_server(tmp_path, ca, client_ca=clients)
    try:
        cert, key = clients.issue("app-1", server=False)
        ok = flight.FlightClient(server.flight_url, tls_root_certs=ca.pem, cert_chain=cert, private_key=key)
        assert _select_one(ok) == 1
        with quilldb.connect(server.flight_url, tls_root_certs=ca.pem, cert_chain=cert, private_key=key) as db:
            assert db.query("SELECT 2 AS two").column("two").to_pylist() == [2]
        import adbc_driver_flightsql.dbapi as flight_sql
        from adbc_driver_flightsql import DatabaseOptions

        with flight_sql.connect(server.flight_url, db_kwargs={
                "username": "root", "password": "",
                DatabaseOptions.TLS_ROOT_CERTS.value: ca.pem.decode(),
                DatabaseOptions.MTLS_CERT_CHAIN.value: cert.decode(),
                DatabaseOptions.MTLS_PRIVATE_KEY.value: key.decode()}) as conn:
            cur = conn.cursor()
            cur.execute("SELECT 3 AS three")
            assert cur.fetch_arrow_table().column("three").to_pylist() == [3]
            cur.close()
        # No certificate, or one from another CA: every call fails, saying why.
        with pytest.raises(flight.FlightUnauthenticatedError) as err:
            _select_one(flight.FlightClient(server.flight_url, tls_root_certs=ca.pem))
        assert "requires a client certificate" in str(err.value)
        stranger = Ca("stranger CA").issue("intruder", server=False)
        with pytest.raises(flight.FlightUnauthenticatedError) as err:
            _select_one(flight.FlightClient(server.flight_url, tls_root_certs=ca.pem,
                                            cert_chain=stranger[0], private_key=stranger[1]))
        assert "client certificate was refused" in str(err.value) and "UnknownIssuer" in str(err.value)
        with pytest.raises(quilldb.Unauthenticated):
            quilldb.connect(server.flight_url, tls_root_certs=ca.pem)
        with pytest.raises(Exception) as err:
            with flight_sql.connect(server.flight_url, db_kwargs={
                    "username": "root", "password": "",
                    DatabaseOptions.TLS_ROOT_CERTS.value: ca.pem.decode()}) as conn:
                conn.cursor().execute("SELECT 1")
        assert "requires a client certificate" in str(err.value)
        # HTTPS without a certificate: 403 with the reason.
        with pytest.raises(urllib.error.HTTPError) as err:
            _https(server.http_url + "/health", ca.pem)
        assert err.value.code == 403
        assert _select_one(ok) == 1
    finally:
        server.stop()


def _wait_log(server: Server, text: str, count: int):
    deadline = time.time() + 20
    while server.log_path.read_text().count(text) < count:
        assert time.time() < deadline, f"no {text!r} in the log"
        time.sleep(0.05)


def test_sighup_reloads_the_certificate_without_dropping_connections(tls, tmp_path):
    server, old_ca = tls
    old = flight.FlightClient(server.flight_url, tls_root_certs=old_ca.pem)
    assert _select_one(old) == 1
    # A long-lived subscription on the old certificate.
    db = quilldb.connect(server.flight_url, tls_root_certs=old_ca.pem)
    db.execute("CREATE NAMESPACE hup")
    db.execute("CREATE TABLE hup.t (id BIGINT PRIMARY KEY)")
    sub = db.subscribe("SUBSCRIBE TO hup.t")
    while next(sub).kind != "initial_done":
        pass

    new_ca = Ca("rotated CA")
    _write(tmp_path, new_ca.issue("quilldb-rotated", server=True))
    server.proc.send_signal(signal.SIGHUP)
    _wait_log(server, "TLS certificate and key read again", 1)

    # Open connections go on: the old client's channel and the subscription.
    assert _select_one(old) == 1
    db.execute("INSERT INTO hup.t VALUES (7)")
    event = next(sub)
    while event.kind == "heartbeat":
        event = next(sub)
    assert event.kind == "change" and event.batch.column("id").to_pylist() == [7]
    # New connections get the new certificate.
    assert _select_one(flight.FlightClient(server.flight_url, tls_root_certs=new_ca.pem)) == 1
    with pytest.raises(flight.FlightUnavailableError) as err:
        list(flight.FlightClient(server.flight_url, tls_root_certs=old_ca.pem).list_actions())
    assert "certificate verify failed" in str(err.value)
    assert _https(server.http_url + "/health", new_ca.pem)[0] == 200

    # A broken reload keeps the certificate in use.
    (tmp_path / "server.key").write_bytes(b"not a key")
    server.proc.send_signal(signal.SIGHUP)
    _wait_log(server, "TLS files not reloaded", 1)
    assert _select_one(flight.FlightClient(server.flight_url, tls_root_certs=new_ca.pem)) == 1
    assert server.proc.poll() is None
    sub.close()
    db.close()


def test_incomplete_or_broken_tls_settings_stop_the_start_with_a_clear_error(tmp_path):
    ca = Ca("quilldb test CA")
    _write(tmp_path, ca.issue("quilldb-test", server=True))
    with pytest.raises(RuntimeError) as err:
        Server(tmp_path, args=["--tls-cert", str(tmp_path / "server.crt")])
    assert "TLS needs both server.tls_cert and server.tls_key" in str(err.value)
    (tmp_path / "other.key").write_bytes(_pem_key(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(RuntimeError) as err:
        Server(tmp_path, args=["--tls-cert", str(tmp_path / "server.crt"), "--tls-key", str(tmp_path / "other.key")])
    assert "do not make a certificate" in str(err.value)
