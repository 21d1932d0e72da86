"""Shipments landed column-wise store exactly what the row path stores; whatever the
column-wise path cannot take lands row by row, with its dead letters."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

import mlwb.predictions  # noqa: F401  (registers the predictions table)
from api.serving.service import spool_json
from mlwb import columnar, fastjson
from mlwb.ingest import Ingest
from mlwb.lake import Lake

from .test_lake import drain

TS = 1_764_000_000_000_000  # microseconds: 2025-11


def prediction(i: int, **changes: Any) -> dict[str, Any]:
    """A prediction row as the API writes it, with values that test the stored form."""
    pid = uuid.uuid4().hex
    row = {
        "id": pid, "ts": TS + i, "prediction_id": pid, "request_id": f"req-{i}",
        "model": "bc-lr", "version": "3", "alias": "champion", "arm": "champion",
        "caller": "token:ab12" if i % 3 else None,
        "inputs": {"zeta": i * 0.1, "alpha": -0.0, "text": "naïve ☃ \"q\" \\ /\t",
                   "nested": {"b": [1, 2.5e-7, None, True], "a": {}}, "big": 2**62 + i,
                   "tiny": 5e-324, "ctrl": "\x01"},
        "outputs": {"prediction": i % 2, "probabilities": {"1": 0.75, "0": 0.25}},
        "latency_ms": 0.5 + i,
        # JSON nulls, and texts as long as "null", stored as their own column's
        "timings": (None, True, "ab", {"validate": 0.01, "model": 0.1})[i % 4],
        "run_id": None if i % 4 == 0 else "run-1",
    }
    row.update(changes)
    return row


def line(row: dict[str, Any], table: str = "predictions") -> bytes:
    """A spool line, as the API writes it."""
    return table.encode() + b"\t" + spool_json(row) + b"\n"


def ingest_for(tmp_path: Path, client: redis.Redis, name: str) -> Ingest:
    return Ingest(client, tmp_path / name, stream=f"wb:events:{name}").open()


def stored(lake_dir: Path, table: str = "predictions") -> list[tuple[Any, ...]]:
    return Lake(lake_dir).query(f"SELECT * FROM {table} ORDER BY id")


def test_a_shipment_lands_column_wise_exactly_as_row_by_row(tmp_path: Path,
                                                           redis_client: redis.Redis) -> None:
    rows = [prediction(i) for i in range(40)]
    fast, slow = ingest_for(tmp_path, redis_client, "fast"), ingest_for(tmp_path, redis_client,
                                                                         "slow")
    redis_client.xadd(fast.stream, {"lines": b"".join(line(r) for r in rows[:25])})
    redis_client.xadd(fast.stream, {"lines": b"".join(line(r) for r in rows[25:])})
    for r in rows:  # one event per entry: the row path
        redis_client.xadd(slow.stream, {"t": "predictions", "d": fastjson.dumps(r)})
    assert drain(fast) == 40 and drain(slow) == 40
    assert (fast.columnar_rows, slow.columnar_rows) == (40, 0)
    got, want = stored(fast.lake_dir), stored(slow.lake_dir)
    assert got == want  # every value, the JSON columns' text byte for byte
    inputs = dict(Lake(fast.lake_dir).query("SELECT id, inputs FROM predictions"))
    assert inputs[rows[7]["id"]] == fastjson.dumps(rows[7]["inputs"], sort_keys=True).decode()


def test_a_repeated_shipment_and_a_repeated_row_land_once(tmp_path: Path,
                                                          redis_client: redis.Redis) -> None:
    rows = [prediction(i) for i in range(6)]
    ingest = ingest_for(tmp_path, redis_client, "lake")
    shipment = b"".join(line(r) for r in rows[:4])
    redis_client.xadd(ingest.stream, {"lines": shipment})
    assert drain(ingest) == 4
    redis_client.xadd(ingest.stream, {"lines": shipment})  # a retry, landed before
    redis_client.xadd(ingest.stream, {"lines": line(rows[4]) + line(rows[4]) + line(rows[3])
                                      + line(rows[5])})
    assert drain(ingest) == 2
    ids = [r[0] for r in Lake(ingest.lake_dir).query("SELECT id FROM predictions")]
    assert sorted(ids) == sorted(r["id"] for r in rows)
    assert ingest.columnar_rows == 4 + 4 + 4
    segments = len(ingest.manifest.tables["predictions"])
    redis_client.xadd(ingest.stream, {"lines": shipment})  # all seen: no (empty) segment
    assert drain(ingest) == 0
    assert len(ingest.manifest.tables["predictions"]) == segments


@pytest.mark.parametrize(("odd", "column_wise"), [
    ("a string column given a number", False),  # the row path stores it as text
    ("a time as ISO text", False),  # converted by the row path
    ("a time in seconds", False),
    ("NaN in the inputs", False),  # json's literal: only the row path reads it
    ("a lone surrogate", False),  # stored as U+FFFD by the row path
    ("an integer beyond 64 bits in the inputs", False),  # the API writes it with json
])
def test_odd_values_land_as_they_would_row_by_row(
        odd: str, column_wise: bool, tmp_path: Path, redis_client: redis.Redis) -> None:
    rows = [prediction(i) for i in range(3)]
    text = [line(r) for r in rows]
    if odd == "a string column given a number":
        text[1] = line(prediction(1, version=7))
    elif odd == "a time as ISO text":
        text[1] = line(prediction(1, ts="2025-11-27T10:00:00.123456Z"))
    elif odd == "a time in seconds":
        text[1] = line(prediction(1, ts=1_764_000_000.25))
    elif odd == "NaN in the inputs":
        text[1] = text[1].replace(b'"zeta":0.1', b'"zeta":NaN')
    elif odd == "a lone surrogate":
        text[1] = text[1].replace(b'"text":"', b'"text":"\\ud800')
    else:
        text[1] = line(prediction(1, inputs={"zeta": 2**100, "text": "naïve", "f": 1e-7}))
        assert b"\t {" in text[1] and b"1267650600228229401496703205376" in text[1]
    fast, slow = ingest_for(tmp_path, redis_client, "fast"), ingest_for(tmp_path, redis_client,
                                                                         "slow")
    redis_client.xadd(fast.stream, {"lines": b"".join(text)})
    for t in text:  # one event per entry: the row path
        redis_client.xadd(slow.stream, {"t": "predictions", "d": t.partition(b"\t")[2][:-1]})
    assert drain(fast) == 3 and drain(slow) == 3
    assert (fast.columnar_rows, slow.columnar_rows) == (3 if column_wise else 0, 0)
    assert stored(fast.lake_dir) == stored(slow.lake_dir) != []


@pytest.mark.parametrize("bad", [
    "an unknown column", "a required column missing", "a time before 2000",
    "text that is not UTF-8", "bad JSON", "a row that is not an object", "two rows on a line",
])
def test_a_shipment_with_a_bad_row_dead_letters_that_row_alone(
        bad: str, tmp_path: Path, redis_client: redis.Redis) -> None:
    rows = [prediction(i) for i in range(4)]
    text = [line(r) for r in rows]
    if bad == "an unknown column":
        text[2] = line(prediction(2, colour="red"))
    elif bad == "a required column missing":
        text[2] = line({k: v for k, v in rows[2].items() if k != "model"})
    elif bad == "a time before 2000":
        text[2] = line(prediction(2, ts=900_000_000_000_000))
    elif bad == "text that is not UTF-8":
        text[2] = text[2].replace(b'"text":"', b'"text":"\xff')
    elif bad == "bad JSON":
        text[2] = text[2][:-5] + b"\n"
    elif bad == "two rows on a line":
        text[2] = text[2][:-1] + b"," + text[2].partition(b"\t")[2]
    else:
        text[2] = b"predictions\t[1, 2]\n"
    ingest = ingest_for(tmp_path, redis_client, "lake")
    sid = redis_client.xadd(ingest.stream, {"lines": b"".join(text)}).decode()
    assert drain(ingest) == 3
    assert ingest.columnar_rows == 0
    landed = {r[0] for r in Lake(ingest.lake_dir).query("SELECT id FROM predictions")}
    assert landed == {rows[i]["id"] for i in (0, 1, 3)}
    dead = Lake(ingest.lake_dir).query("SELECT stream_id FROM dead_letters")
    assert dead == [(f"{sid}/2",)]


def test_a_shipment_of_two_tables_lands_row_by_row(tmp_path: Path,
                                                   redis_client: redis.Redis) -> None:
    pid = uuid.uuid4().hex
    feedback = {"id": uuid.uuid4().hex, "ts": TS, "prediction_id": pid, "label": 1}
    assert columnar.split(line(prediction(0)) + line(feedback, "feedback")) is None
    ingest = ingest_for(tmp_path, redis_client, "lake")
    redis_client.xadd(ingest.stream, {"lines": line(prediction(0, prediction_id=pid))
                                      + line(feedback, "feedback")})
    assert drain(ingest) == 2 and ingest.columnar_rows == 0
    assert Lake(ingest.lake_dir).query("SELECT label FROM feedback") == [("1",)]


def texts(blob: bytes) -> tuple[str, list[bytes]] | None:
    found = columnar.split(blob)
    return None if found is None else (found[0], [bytes(t) for t in found[1]])


def test_split_finds_each_row_of_one_table() -> None:
    blob = b'predictions\t{"a":1}\npredictions\t{"a":"x\\ny"}\n'
    assert texts(blob) == ("predictions", [b'{"a":1}', b'{"a":"x\\ny"}'])
    assert texts(b'predictions\t{"a":1}') is None  # not a whole line
    assert texts(b"no table\n") is None
    assert texts(b'predictions\t {"a":1}\n') is None  # written by json: row path
    later = b'predictions\t{"a":1}\npredictions\t {"a":2}\npredictions\t{"a":3}\n'
    assert texts(later) is None  # a json-written line anywhere sends it row by row
    assert texts(b'predictions\t{"a":1}\n') == ("predictions", [b'{"a":1}'])
    three = b"".join(b'predictions\t{"a":%d}\n' % i for i in range(3))
    assert texts(three) == ("predictions", [b'{"a":%d}' % i for i in range(3)])
    assert texts(b'\t{"a":1}\n\t{"a":2}\n') == ("", [b'{"a":1}', b'{"a":2}'])
    assert texts(b'predictions\t{"a":1}\npredictions\t\n') is None  # an empty line
    assert texts(b'predictions\t{"a":1}\n\n') is None
    assert texts(b'predictions\t{"a":1}\nfeedback\t{"a":1}\n') is None
    assert texts(b'predictions\t{"a":1}\npredictions\t[1]\n') is None  # not an object
    assert texts(b'predictions\t{"a":"\xff"}\n') is None  # not UTF-8
    assert texts('predictions\t{"a":"naïve"}\n'.encode()) is not None
    row = [memoryview(b'{"a":1}')]
    assert columnar.land("audit", row) is None  # audit rows are chained one by one
    assert columnar.land("no such table", row) is None
