"""`forewarn bench scaling`: what one ingest worker, one training process and one dashboard process sustain.

On throwaway local services (one PostgreSQL, a fresh Mosquitto per ingest measurement), each figure a
median over repeats, each beside a ceiling measured in the same run (docs/scaling.md uses them):

- `ingest`: gateways' steady-state traffic, one uplink batch of 20 aggregates (one period of a 20-asset
  gateway) and one heartbeat per period, from `publishers` processes. With `1`, `2` and `3` ingest worker
  processes in one shared subscription: `backlog_*` is the workers draining a backlog the broker holds
  for them (they are paused with SIGSTOP while it is published, then resumed: a feed above their
  capacity by construction); `live_*` is publishers and workers running at once. `publisher_*` is the
  publishers' own rate into the broker while the workers are paused (the feed's ceiling), and
  `raw_copy_rows_per_s` / `write_path_rows_per_s` the database's ceilings (`forewarn bench ingest`'s).
- `training`: one retraining run of a target (`train_target`, 100 assets x 480 periods, as
  `forewarn bench retrain`) in one process, then two processes training two targets at once.
- `dashboard`: `forewarn dashboard` (waitress, default threads) in its own process on a seeded fleet,
  under `clients` concurrent keep-alive HTTP clients (threads) posting the fleet page's data callbacks;
  beside `client_ceiling_rps`, the same clients against a trivial WSGI app on waitress.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from cloud_service.migrate import migrate
from cloud_service.settings import CloudSettings
from cloud_service.users import add_user
from forewarn.bench import ingest as ingest_bench
from forewarn.bench import retrain as retrain_bench
from forewarn.bench.dashboard_seed import Fleet, seed_fleet
from forewarn.bench.timing import percentile
from forewarn.localservices import (
    MosquittoServer,
    PostgresServer,
    free_port,
    running,
    temporary_directory,
    wait_until,
)
from shared import topics
from shared.config import load_settings
from shared.messages import Status, encode

__all__ = ["WORKER_COUNTS", "run"]

WORKER_COUNTS = (1, 2, 3)
_ROWS_PER_BATCH = 20  # one period of a 20-asset gateway: what a gateway sends in steady state
_PUBLISHERS = 2
_TARGETS = ("pump", "fan")
_PASSWORD = "bench-scaling-password"  # a throwaway user in a throwaway database


_STARTED = time.monotonic()


def _progress(text: str) -> None:
    print(f"bench scaling [{time.monotonic() - _STARTED:.0f} s]: {text}", file=sys.stderr, flush=True)


# --- ingest ---------------------------------------------------------------------------------------


def _gateway_payloads(gateway_id: str, rows: int) -> list[tuple[str, bytes, bool]]:
    """(topic, payload, retain) of `rows` aggregates as a 20-asset gateway sends them, period by period:
    one uplink batch of the period's 20 rows, then the period's heartbeat (retained)."""
    messages = ingest_bench._messages(gateway_id, rows, assets=_ROWS_PER_BATCH)
    batches = ingest_bench._payloads(gateway_id, [encode(m) for m in messages], _ROWS_PER_BATCH)
    out: list[tuple[str, bytes, bool]] = []
    for index, (topic, payload) in enumerate(batches):
        out.append((topic, payload, False))
        end_ns = messages[index * _ROWS_PER_BATCH].period_end_ns
        status = Status(gateway_id=gateway_id, ts_ns=end_ns, state="online", seq=index, uptime_s=10.0 * index)
        out.append((topics.status(gateway_id), encode(status), True))
    return out


def _publish_gateway(port: int, gateway_id: str, rows: int, ready: Any) -> tuple[float, float]:
    """Build the payloads, wait on `ready`, publish them all at QoS 1 as fast as the broker acknowledges;
    returns (first publish, last PUBACK) monotonic times."""
    payloads = _gateway_payloads(gateway_id, rows)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{gateway_id}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(256)
    acked = [0]
    client.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
    client.connect("127.0.0.1", port)
    ready.wait()
    start = time.monotonic()
    for topic, payload, retain in payloads:
        client.publish(topic, payload, qos=1, retain=retain)
        client.loop(0)
    while acked[0] < len(payloads):
        client.loop(0.01)
    span = (start, time.monotonic())
    client.disconnect()
    return span


def _publisher_main(orders: Any, results: Any, ready: Any) -> None:
    """A publisher process: publish each (port, gateway, rows) order; None ends it."""
    while (order := orders.get()) is not None:
        port, gateway_id, rows = order
        results.put(_publish_gateway(port, gateway_id, rows, ready))


class _Publishers:
    """`_PUBLISHERS` gateway publisher processes, started once and given one order per run."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._ready = context.Barrier(_PUBLISHERS + 1)
        self._results: Any = context.Queue()
        self._orders: list[Any] = [context.Queue() for _ in range(_PUBLISHERS)]
        self._processes = [
            context.Process(target=_publisher_main, args=(q, self._results, self._ready), daemon=True)
            for q in self._orders
        ]
        for process in self._processes:
            process.start()

    def publish(self, port: int, prefix: str, rows: int) -> tuple[float, float]:
        """Publish `rows` (split over the gateways `prefix0`, `prefix1`, ...); returns the monotonic time
        of the first publish and the publishers' rows per second."""
        per_gateway = rows // _PUBLISHERS
        for index, orders in enumerate(self._orders):
            orders.put((port, f"{prefix}{index}", per_gateway))
        self._ready.wait(timeout=300)
        spans: list[tuple[float, float]] = [self._results.get(timeout=600) for _ in self._orders]
        first = min(start for start, _ in spans)
        return first, per_gateway * _PUBLISHERS / (max(end for _, end in spans) - first)

    def close(self) -> None:
        """End the processes."""
        for orders in self._orders:
            orders.put(None)
        for process in self._processes:
            process.join(30)


def _worker_settings(pg: PostgresServer, mq: MosquittoServer, dbname: str, workers: int) -> CloudSettings:
    return load_settings(
        CloudSettings,
        environ={},
        overrides={
            "mqtt": {"port": mq.port, "receive_maximum": 256},
            "db": {"port": pg.port, "dbname": dbname},
            "ingest": {
                "workers": workers,
                "group": "scaling",
                "client_id_prefix": "bench",
                "queue_size": 256,
                "batch_max_rows": 2048,
            },
        },
    )


def _stored(conn: psycopg.Connection[Any], prefix: str, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table} WHERE gateway_id LIKE %s", (prefix + "%",)).fetchone()
    return int(row[0]) if row else 0


def _wait_all_stored(conn: psycopg.Connection[Any], prefix: str, rows: int) -> None:
    """Every aggregate and heartbeat of `prefix`'s gateways committed (the last rows first: cheap)."""
    per_gateway = rows // _PUBLISHERS
    ingest_bench._wait_stored(conn, prefix, _PUBLISHERS, per_gateway)
    heartbeats = per_gateway // _ROWS_PER_BATCH * _PUBLISHERS
    wait_until(lambda: _stored(conn, prefix, "heartbeats") >= heartbeats, timeout_s=600, interval_s=0.02)


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes `pids` have used so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def _signal_all(workers: list[Any], signum: int) -> None:
    for process in workers:
        os.kill(process.pid, signum)


def _ingest_repeat(  # noqa: PLR0917 - a private helper of one caller
    conn: psycopg.Connection[Any],
    mq: MosquittoServer,
    publishers: _Publishers,
    workers: list[Any],
    tag: str,
    rows: int,
) -> dict[str, float]:
    """One backlog drain and one live run of `rows` through the running `workers`."""
    backlog = f"s{tag}b-"
    _signal_all(workers, signal.SIGSTOP)
    try:
        _, publisher = publishers.publish(mq.port, backlog, rows)
    finally:
        _signal_all(workers, signal.SIGCONT)
    pids = [process.pid for process in workers]
    cpu_before = _cpu_s(pids)
    start = time.perf_counter()
    _wait_all_stored(conn, backlog, rows)
    drained = rows / (time.perf_counter() - start)
    cpu_us_per_row = (_cpu_s(pids) - cpu_before) / rows * 1e6
    live = f"s{tag}l-"
    first_publish, _ = publishers.publish(mq.port, live, rows)
    _wait_all_stored(conn, live, rows)
    return {
        "backlog": drained,
        "live": rows / (time.monotonic() - first_publish),
        "publisher": publisher,
        "cpu_us_per_row": cpu_us_per_row,
    }


def _workers_connected(conn: psycopg.Connection[Any], n: int) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM ingest_workers WHERE worker_id LIKE 'bench-%' "
        "AND (metrics->>'connected')::boolean AND updated_at > now() - interval '20 seconds'"
    ).fetchone()
    return bool(row and row[0] >= n)


def _ingest_with(  # noqa: PLR0917 - a private helper of one caller
    pg: PostgresServer, workdir: Path, publishers: _Publishers, workers: int, rows: int, repeats: int
) -> dict[str, float]:
    """Medians over `repeats` with `workers` worker processes, on a fresh broker and database."""
    dbname = f"ingest{workers}"
    pg.create_database(dbname)
    migrate(pg.conninfo(dbname))
    with (
        running(MosquittoServer(workdir / f"mq{workers}")) as mq,
        psycopg.connect(pg.conninfo(dbname), autocommit=True) as conn,
    ):
        processes = ingest_bench._start_workers(_worker_settings(pg, mq, dbname, workers))
        try:
            wait_until(lambda: _workers_connected(conn, workers), timeout_s=120)
            runs = [
                _ingest_repeat(conn, mq, publishers, processes, f"{workers}r{i}", rows)
                for i in range(repeats)
            ]
        finally:
            ingest_bench._stop_workers(processes)
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def _ingest_figures(pg: PostgresServer, workdir: Path, *, quick: bool) -> dict[str, Any]:
    rows = 2_000 if quick else 60_000
    repeats = 1 if quick else 3
    dbname = "ceiling"
    pg.create_database(dbname)
    migrate(pg.conninfo(dbname))
    _progress("ingest: database ceilings")
    raw = ingest_bench._raw_copy_rate(
        pg.conninfo(dbname), ingest_bench._messages("ceil-raw", rows), repeats=repeats
    )
    write_path = ingest_bench._write_path_rate(pg.conninfo(dbname), rows // 2, batch=2048, repeats=repeats)
    by_workers: dict[int, dict[str, float]] = {}
    publishers = _Publishers()
    try:
        for workers in WORKER_COUNTS:
            _progress(f"ingest: {workers} worker process(es), {repeats} x {rows:,} rows")
            by_workers[workers] = _ingest_with(pg, workdir, publishers, workers, rows, repeats)
    finally:
        publishers.close()
    one = by_workers[1]["backlog"]
    figures: dict[str, Any] = {
        "rows_per_run": rows,
        "rows_per_batch": _ROWS_PER_BATCH,
        "heartbeats_per_batch": 1,
        "publishers": _PUBLISHERS,
        "raw_copy_rows_per_s": round(raw),
        "write_path_rows_per_s": round(write_path),
    }
    for count, rates in by_workers.items():
        figures[f"workers_{count}"] = {
            "backlog_rows_per_s": round(rates["backlog"]),
            "backlog_messages_per_s": round(rates["backlog"] / _ROWS_PER_BATCH * 2),
            "live_rows_per_s": round(rates["live"]),
            "publisher_rows_per_s": round(rates["publisher"]),
            "worker_cpu_us_per_row": round(rates["cpu_us_per_row"], 1),
            "backlog_to_one_worker_ratio": round(rates["backlog"] / one, 3),
            "backlog_per_worker_to_one_worker_ratio": round(rates["backlog"] / one / count, 3),
            "backlog_to_write_path_ratio": round(rates["backlog"] / write_path, 3),
            "publisher_to_backlog_ratio": round(rates["publisher"] / rates["backlog"], 3),
        }
    return figures


# --- training -------------------------------------------------------------------------------------


def _train_process(  # noqa: PLR0917 - a process target takes its arguments by position
    conninfo: str, target: str, key_path: str, repeats: int, ready: Any, results: Any
) -> None:
    """Train `target` `repeats` times once every process is ready; put (start, end, [seconds]) on results."""
    from cloud_service.lifecycle.retraining import train_target  # noqa: PLC0415 - in the spawned process
    from cloud_service.lifecycle.settings import LifecycleSettings  # noqa: PLC0415
    from cloud_service.lifecycle.signing import load_private_key  # noqa: PLC0415

    settings = LifecycleSettings.model_validate({"signing_key": key_path, "min_training_rows": 100})
    key = load_private_key(Path(key_path))
    ready.wait()
    start = time.monotonic()
    seconds = []
    with psycopg.connect(conninfo) as conn:
        for _ in range(repeats):
            began = time.monotonic()
            report = train_target(conn, settings, target, private_key=key)
            conn.commit()
            if report.selected is None:
                raise RuntimeError(f"no candidate passed the gates: {report}")
            seconds.append(time.monotonic() - began)
    results.put((start, time.monotonic(), seconds))


def _train_in_processes(conninfo: str, targets: tuple[str, ...], key_path: Path, repeats: int) -> Any:
    """Train each of `targets` in its own process, all at once: ((start, end, [seconds]) per process)."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(len(targets) + 1)
    results = context.Queue()
    processes = [
        context.Process(
            target=_train_process, args=(conninfo, t, str(key_path), repeats, ready, results), daemon=True
        )
        for t in targets
    ]
    for process in processes:
        process.start()
    ready.wait(timeout=300)
    spans = [results.get(timeout=3600) for _ in processes]
    for process in processes:
        process.join(30)
    return spans


def _training_figures(pg: PostgresServer, workdir: Path, *, quick: bool) -> dict[str, Any]:
    from cloud_service.lifecycle.signing import init_keys  # noqa: PLC0415 - only this part signs

    assets = 10 if quick else 100
    rows_per_asset = 240 if quick else 480
    repeats = 1 if quick else 2
    conninfo = pg.create_database("training")
    migrate(conninfo, allow_timescale=False)
    _progress(f"training: seeding {len(_TARGETS)} targets x {assets} assets x {rows_per_asset} periods")
    for index, target in enumerate(_TARGETS):
        ids = [f"{target}-{i:03d}" for i in range(assets)]
        retrain_bench.seed_fleet(
            conninfo,
            asset_ids=ids,
            asset_type=target,
            rows_per_asset=rows_per_asset,
            seed=index,
            gateway_prefix=f"gw{target}",
        )
    keys = init_keys(workdir / "keys")
    _progress(f"training: 1 process x {repeats} runs")
    [(_, _, single)] = _train_in_processes(conninfo, _TARGETS[:1], keys.private_key, repeats)
    _progress(f"training: {len(_TARGETS)} processes x {repeats} runs at once")
    spans = _train_in_processes(conninfo, _TARGETS, keys.private_key, repeats)
    wall = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    one_s = statistics.median(single)
    parallel_per_h = len(_TARGETS) * repeats / wall * 3600
    return {
        "assets_per_target": assets,
        "rows_per_asset": rows_per_asset,
        "runs_per_process": repeats,
        "one_process_s_per_target": round(one_s, 2),
        "one_process_targets_per_h": round(3600 / one_s, 1),
        "two_processes_s_per_target": round(statistics.median(s for *_, runs in spans for s in runs), 2),
        "two_processes_targets_per_h": round(parallel_per_h, 1),
        "two_to_one_process_ratio": round(parallel_per_h / (3600 / one_s), 3),
    }


# --- dashboard ------------------------------------------------------------------------------------


def _trivial_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def _trivial_server(port: int) -> None:
    """A process serving a constant 2-byte answer with waitress's defaults (the load client's ceiling)."""
    import waitress  # noqa: PLC0415 - in the spawned process only

    logging.getLogger("waitress").setLevel(logging.ERROR)  # "Task queue depth" is the point here
    waitress.serve(_trivial_app, host="127.0.0.1", port=port, threads=4, _quiet=True)


class _Client:
    """Logged-in HTTP/1.1 keep-alive requests to one server: the session cookie and CSRF header."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.headers: dict[str, str] = {}

    def login(self, username: str, password: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", "/login")
        page = conn.getresponse()
        cookies: SimpleCookie = SimpleCookie()
        for header in page.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
        token = page.read().decode().split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        form = urllib.parse.urlencode({"csrf_token": token, "username": username, "password": password})
        conn.request(
            "POST",
            "/login",
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": "; ".join(f"{k}={v.value}" for k, v in cookies.items()),
            },
        )
        answer = conn.getresponse()
        answer.read()
        if answer.status != 302:
            raise RuntimeError(f"bench login failed: HTTP {answer.status}")
        for header in answer.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
        conn.close()
        from dashboard.security import CSRF_COOKIE, CSRF_HEADER  # noqa: PLC0415 - the names Dash uses

        self.headers = {
            "Cookie": "; ".join(f"{k}={v.value}" for k, v in cookies.items()),
            CSRF_HEADER: cookies[CSRF_COOKIE].value,
            "Content-Type": "application/json",
        }


def _fleet_callback_body() -> bytes:
    """The fleet table's callback request as Dash's renderer posts it on a refresh (no filters)."""
    outputs = [
        ("fleet-table", "children"),
        ("fleet-site", "options"),
        ("fleet-line", "options"),
        ("fleet-type", "options"),
        ("fleet-criticality", "options"),
    ]
    inputs = [("refresh", "n_intervals", 1)] + [
        (f"fleet-{name}", "value", None) for name in ("site", "line", "type", "criticality", "state")
    ]
    return json.dumps(
        {
            "output": ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..",
            "outputs": [{"id": i, "property": p} for i, p in outputs],
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "changedPropIds": ["refresh.n_intervals"],
            "state": [],
        }
    ).encode()


def _risk_callback_body() -> bytes:
    """The fleet page's 30-day risk overview callback."""
    return json.dumps(
        {
            "output": "fleet-risk.figure",
            "outputs": {"id": "fleet-risk", "property": "figure"},
            "inputs": [{"id": "refresh", "property": "n_intervals", "value": 1}],
            "changedPropIds": ["refresh.n_intervals"],
            "state": [],
        }
    ).encode()


def _load(
    port: int,
    *,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    clients: int,
    seconds: float,
) -> dict[str, float]:
    """`clients` threads, each on its own keep-alive connection, sending the request back to back for
    `seconds`: requests per second and latency percentiles (ms). A non-200 answer fails the run."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []
    go = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        go.wait()
        mine = latencies[index]
        while time.perf_counter() < deadline[0]:
            began = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                failures.append(f"HTTP {answer.status} from {path}")
                break
            mine.append((time.perf_counter() - began) * 1000.0)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), name=f"bench-client-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    start = time.perf_counter()
    go.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(failures[0])
    every = [ms for mine in latencies for ms in mine]
    return {"rps": len(every) / elapsed, "p50_ms": percentile(every, 50), "p95_ms": percentile(every, 95)}


def _dashboard_config(path: Path, pg: PostgresServer, dbname: str, port: int) -> Path:
    path.write_text(
        f'port = {port}\nrefresh_s = 3600\n[db]\nhost = "{pg.host}"\nport = {pg.port}\n'
        f'dbname = "{dbname}"\nuser = "{pg.user}"\n'
        f'[session]\nsecret_key_file = "{path.parent / "secret_key"}"\n'
    )
    return path


@contextlib.contextmanager
def _dashboard_process(config: Path, port: int) -> Iterator[int]:
    """`forewarn dashboard --config FILE` in its own process, until the block ends."""
    command = [
        sys.executable,
        "-c",
        "import sys; from forewarn.cli import main; sys.exit(main(sys.argv[1:]))",
    ]
    process = subprocess.Popen(
        [*command, "dashboard", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: process.poll() is not None or _answers(port), timeout_s=120, interval_s=0.1)
        if process.poll() is not None:
            raise RuntimeError(f"forewarn dashboard exited with {process.returncode}")
        yield process.pid
    finally:
        process.terminate()
        process.wait(30)


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/login")
        conn.getresponse().read()
        conn.close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _trivial_process(port: int) -> Iterator[None]:
    process = multiprocessing.get_context("spawn").Process(target=_trivial_server, args=(port,), daemon=True)
    process.start()
    try:
        wait_until(lambda: _answers(port), timeout_s=60, interval_s=0.05)
        yield
    finally:
        process.terminate()
        process.join(10)


def _median_load(repeats: int, measure: Callable[[], dict[str, float]]) -> dict[str, float]:
    runs = [measure() for _ in range(repeats)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def _dashboard_figures(pg: PostgresServer, workdir: Path, *, quick: bool) -> dict[str, Any]:
    if quick:
        fleet = Fleet(gateways=2, assets_per_gateway=5, days=1, period=timedelta(minutes=10))
    else:
        fleet = Fleet(gateways=50, assets_per_gateway=20, days=7, period=timedelta(minutes=10))
    clients = 8
    seconds = 0.5 if quick else 10.0
    repeats = 1 if quick else 3
    conninfo = pg.create_database("dashboard")
    migrate(conninfo)
    _progress(f"dashboard: seeding {fleet.n_assets} assets x {fleet.days} days")
    with psycopg.connect(conninfo) as conn:
        seed_fleet(conn, fleet)
        add_user(conn, "bench", role="viewer", password=_PASSWORD)
        conn.commit()
    trivial_port = free_port()
    with _trivial_process(trivial_port):
        _progress("dashboard: client ceiling")
        ceiling = _median_load(
            repeats,
            lambda: _load(
                trivial_port, method="GET", path="/", body=None, headers={}, clients=clients, seconds=seconds
            ),
        )
    port = free_port()
    config = _dashboard_config(workdir / "dashboard.toml", pg, "dashboard", port)
    results: dict[str, dict[str, float]] = {}
    with _dashboard_process(config, port) as server_pid:
        client = _Client(port)
        client.login("bench", _PASSWORD)
        for name, body in (("fleet_table", _fleet_callback_body()), ("fleet_risk", _risk_callback_body())):
            _progress(f"dashboard: {name} callback, {clients} clients")

            def measure(body: bytes = body) -> dict[str, float]:
                cpu_before = _cpu_s([server_pid])
                figures = _load(
                    port,
                    method="POST",
                    path="/_dash-update-component",
                    body=body,
                    headers=client.headers,
                    clients=clients,
                    seconds=seconds,
                )
                figures["server_cpu_ms_per_request"] = (
                    (_cpu_s([server_pid]) - cpu_before) * 1000.0 / max(1.0, figures["rps"] * seconds)
                )
                return figures

            results[name] = _median_load(repeats, measure)
    figures: dict[str, Any] = {
        "assets": fleet.n_assets,
        "days": fleet.days,
        "clients": clients,
        "seconds_per_run": seconds,
        "waitress_threads": 4,
        "client_ceiling_rps": round(ceiling["rps"], 1),
    }
    for name, rates in results.items():
        figures[name] = {
            "rps": round(rates["rps"], 2),
            "p50_ms": round(rates["p50_ms"], 1),
            "p95_ms": round(rates["p95_ms"], 1),
            "server_cpu_ms_per_request": round(rates["server_cpu_ms_per_request"], 1),
            "to_client_ceiling_ratio": round(rates["rps"] / ceiling["rps"], 4),
        }
    return figures


def run(*, quick: bool = False) -> dict[str, object]:
    """Measure one ingest worker (and 2, 3), one training process (and 2) and one dashboard process.

    Args:
        quick: small data and one repeat of each (for tests): every key, imprecise values.
    """
    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    with (
        temporary_directory("forewarn-bench-scaling-") as workdir,
        running(PostgresServer(workdir / "pg")) as pg,
    ):
        ingest = _ingest_figures(pg, workdir, quick=quick)
        training = _training_figures(pg, workdir, quick=quick)
        dashboard = _dashboard_figures(pg, workdir, quick=quick)
    return {
        "ingest": ingest,
        "training": training,
        "dashboard": dashboard,
        "cores": os.cpu_count(),
        "load_average_before": load_before,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.monotonic() - started, 1),
        "note": "services, publishers, workers and clients share this machine's cores",
        "when": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
