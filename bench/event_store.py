"""Event store figures: visibility delay (record -> readable) and recording cost vs raw Redis.

Usage: .venv/bin/python bench/event_store.py [--events 20000]
Starts its own redis-server on a free port and an ingest thread; prints one table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import redis

from mlwb.events import EventSink
from mlwb.ingest import Ingest
from mlwb.lake import Lake
from mlwb.redis_server import free_port, start_redis


def main() -> None:
    """Run the benchmark and print the figures side by side."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wb-bench-"))
    port = free_port()
    proc = start_redis(root / "redis", port)
    client = redis.Redis(port=port)
    sink = EventSink(client)
    n = args.events
    try:
        # 1. Recording cost: our validated record vs a raw XADD of the same JSON.
        t0 = time.perf_counter()
        for i in range(n):
            client.xadd("raw", {"t": "events", "d": f'{{"kind":"k","payload":{{"i":{i}}}}}'})
        raw = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(n):
            sink.record("events", {"kind": "k", "payload": {"i": i}})
        ours = n / (time.perf_counter() - t0)
        # The naive alternative: every process inserting into one DuckDB file.
        con = duckdb.connect(str(root / "naive.duckdb"))
        con.execute("CREATE TABLE events (id VARCHAR, kind VARCHAR, payload VARCHAR)")
        t0 = time.perf_counter()
        for i in range(min(n, 5000)):
            con.execute("INSERT INTO events VALUES (?, ?, ?)", [str(i), "k", "{}"])
        duck = min(n, 5000) / (time.perf_counter() - t0)
        con.close()

        # 2. Visibility: time from record() returning to the row being readable.
        ingest = Ingest(client, root / "lake").open()
        stop = threading.Event()
        thread = threading.Thread(target=ingest.run, args=(stop,))
        thread.start()
        lake = Lake(root / "lake")
        delays = []
        for _ in range(20):
            event_id = sink.record("events", {"kind": "probe"})
            t0 = time.perf_counter()
            while not lake.query("SELECT 1 FROM events WHERE id = ?", [event_id]):
                time.sleep(0.005)
            delays.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        while client.xlen("wb:events") > 0:
            time.sleep(0.01)
        drain = time.perf_counter() - t0
        stop.set()
        thread.join()
        ingest.close()
        q = statistics.quantiles(delays, n=20)
        print(f"{'figure':44} {'value':>12}")
        print(f"{'raw redis XADD (events/s, 1 client)':44} {raw:12,.0f}")
        print(f"{'EventSink.record, validated (events/s)':44} {ours:12,.0f}")
        print(f"{'  ratio ours / raw XADD':44} {ours / raw:12.2f}")
        print(f"{'DuckDB INSERT per event, one file (ev/s)':44} {duck:12,.0f}")
        print(f"{'  ratio ours / DuckDB single-writer':44} {ours / duck:12.2f}")
        print(f"{'record -> readable, median (ms)':44} {statistics.median(delays) * 1000:12.1f}")
        print(f"{'record -> readable, p95 (ms)':44} {q[-1] * 1000:12.1f}")
        label = f"backlog of {n} drained after recording (s)"
        print(f"{label:44} {drain:12.2f}")
        per_event = ingest_cpu(client, root / "lake-predictions", n)
        print(f"{'ingest CPU per prediction row, backlog (us)':44} {per_event:12.1f}")
    finally:
        proc.terminate()
        proc.wait()


def ingest_cpu(client: redis.Redis, lake_dir: Path, n: int) -> float:
    """CPU microseconds the ingest spends per prediction row (30 inputs, probabilities)
    landing a backlog of ``n`` rows in its full-size batches."""
    import mlwb.tables_all  # noqa: F401  (registers the predictions table)

    row = {"id": "", "ts": 0, "prediction_id": "", "request_id": "r", "model": "m",
           "version": "1", "alias": "champion", "arm": "champion", "caller": "tok",
           "inputs": {f"feature_{j}": j * 1.5 for j in range(30)},
           "outputs": {"prediction": 1, "probabilities": {"0": 0.25, "1": 0.75}},
           "latency_ms": 1.2, "timings": {"validate": 0.1, "model": 0.05}, "run_id": "run"}
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        row.update(id=f"p{i}", prediction_id=f"p{i}", ts=time.time())
        pipe.xadd("wb:events", {"t": "predictions", "d": json.dumps(row)})
    pipe.execute()
    ingest = Ingest(client, lake_dir).open()
    landed, c0 = 0, time.process_time()
    while landed < n:
        landed += ingest.step()
    ingest.close()
    return (time.process_time() - c0) * 1e6 / n


if __name__ == "__main__":
    main()
