"""The calls Grafana's Flight SQL datasource (influxdata-flightsql-datasource) makes, made the
way it makes them: its SQL editor reads GetSqlInfo by row position, and its dashboards send
queries with its time macros expanded into the text."""

import datetime

import pyarrow as pa
import pyarrow.flight as flight

import wire
from wire import run


def _options(client):
    return flight.FlightCallOptions(headers=[client.authenticate_basic_token(b"root", b"")])


def test_sql_info_without_ids_reads_by_position_like_the_editor(server):
    client = flight.FlightClient(server.flight_url)
    options = _options(client)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(wire.sql_info()), options)
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    assert table.schema == info.schema
    values = table.column("value").to_pylist()
    # What the editor does: frames[0].data.values[1][17..21], each spread as a list.
    keywords = values[17]
    functions = [*values[18], *values[19], *values[20], *values[21]]
    assert isinstance(keywords, list) and "NAMESPACE" in keywords
    assert all(isinstance(f, str) for f in functions) and "abs" in functions and "now" in functions
    assert table.column("info_name").to_pylist()[17:22] == [508, 509, 510, 511, 512]
    # A reader by id sees the same values whatever the order.
    by_id = dict(zip(table.column("info_name").to_pylist(), values))
    asked = client.get_flight_info(flight.FlightDescriptor.for_command(wire.sql_info(0, 508)), options)
    some = client.do_get(asked.endpoints[0].ticket, options).read_all()
    assert dict(zip(some.column("info_name").to_pylist(), some.column("value").to_pylist())) == {
        0: by_id[0], 508: by_id[508]}


def test_a_dashboard_query_with_expanded_time_macros(conn, ns):
    run(conn, f"CREATE TABLE {ns}.metrics (id BIGINT PRIMARY KEY, host TEXT, cpu DOUBLE, ts TIMESTAMPTZ)")
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    rows = [(i, "web" if i % 2 else "db", float(i), start + datetime.timedelta(seconds=10 * i)) for i in range(60)]
    cur = conn.cursor()
    cur.executemany(f"INSERT INTO {ns}.metrics (id, host, cpu, ts) VALUES ($1, $2, $3, $4)", rows)
    cur.close()
    # The docs' example, as Grafana sends it after expanding
    #   $__dateBin(ts) and $__timeFilter(ts) for a 5-minute range and a 60 s interval.
    sql = (
        "SELECT CAST(date_bin(interval '60 second', ts, timestamp '1970-01-01T00:00:00Z') AS TIMESTAMP(9)) AS time, "
        "host, avg(cpu) AS cpu "
        f"FROM {ns}.metrics "
        "WHERE ts >= '2026-01-01T00:00:00Z' AND ts <= '2026-01-01T00:05:00Z' "
        "GROUP BY 1, host ORDER BY 1, host"
    )
    t = run(conn, sql)
    assert t.schema.field("time").type == pa.timestamp("ns")
    assert t.num_rows == 11  # minutes 0-4 for both hosts, then 00:05:00 (one db row)
    assert t.column("time").to_pylist()[0] == datetime.datetime(2026, 1, 1)
    # arrow_cast does the same for a plain column.
    t = run(conn, f"SELECT arrow_cast(ts, 'Timestamp(Nanosecond, None)') AS time FROM {ns}.metrics WHERE id = 0")
    assert t.schema.field("time").type == pa.timestamp("ns")
