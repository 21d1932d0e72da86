"""The prediction log and feedback: lake tables, and the reads the workbench and reports share.

Every prediction the API serves (and every shadow prediction) is one row of ``predictions``;
a shadow row carries the primary's ``prediction_id`` and ``arm = 'shadow'``. ``feedback``
holds at most one label per prediction (the API enforces it). Quality per model version
per time window joins the two by ``prediction_id``, bucketed by *prediction* time, so labels
that arrive days later still count in the window their prediction belongs to.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlwb import defaults
from mlwb.errors import InputError, NotFound
from mlwb.ingest import Ingest
from mlwb.lake import Lake
from mlwb.manifest import Manifest, Segment, fsync_dir, write_manifest, write_parquet
from mlwb.tables import Column, Table, register, to_micros

PREDICTIONS = register(Table("predictions", (
    Column("prediction_id", "string", True, distinct=True),
    Column("request_id", "string", distinct=True),
    Column("model", "string", True),
    Column("version", "string", True),
    Column("alias", "string"),
    Column("arm", "string"),  # champion | challenger | shadow | pinned
    Column("caller", "string"),
    Column("inputs", "json"),  # the features as received; NULL once purged
    Column("outputs", "json"),  # {"prediction": ..., "probabilities": {...}}
    Column("latency_ms", "float"),
    Column("timings", "json"),  # per stage, ms: validate, preprocess, model, log
    Column("run_id", "string"),
)))
FEEDBACK = register(Table("feedback", (
    Column("prediction_id", "string", True, distinct=True),
    Column("label", "json"),  # the true class or value
    Column("caller", "string"),
)))

SHADOW_SUFFIX = ":shadow"
WINDOWS = {"hour": "1 hour", "day": "1 day", "week": "7 days"}


def row_id(prediction_id: str, arm: str) -> str:
    """The lake row id: the prediction id, suffixed for shadow rows (ids must be unique)."""
    return prediction_id + SHADOW_SUFFIX if arm == "shadow" else prediction_id


def get_prediction(lake: Lake, prediction_id: str) -> dict[str, Any] | None:
    """The primary row of a prediction with its shadow rows and feedback, or None."""
    df = lake.df(
        "SELECT id, ts, prediction_id, request_id, model, version, alias, arm, caller, inputs, "
        "outputs, latency_ms, timings, run_id FROM predictions WHERE prediction_id = ?",
        [prediction_id],
    )
    if df.empty:
        return None
    rows = [_decode(r) for r in df.to_dict("records")]
    primary = next((r for r in rows if r["arm"] != "shadow"), rows[0])
    primary["shadow"] = [
        {k: r[k] for k in ("version", "alias", "outputs", "latency_ms", "timings")}
        for r in rows if r is not primary and r["arm"] == "shadow"
    ]
    fb = lake.df("SELECT ts, label, caller FROM feedback WHERE prediction_id = ? ORDER BY ts "
                 "LIMIT 1", [prediction_id])
    primary["feedback"] = _decode(fb.to_dict("records")[0]) if not fb.empty else None
    primary.pop("id", None)
    return primary


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("inputs", "outputs", "timings", "label"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    if "ts" in out and out["ts"] is not None:
        out["ts"] = out["ts"].isoformat()
    return out


def quality(
    lake: Lake, model: str, window: str = "day", since: datetime | str | None = None
) -> list[dict[str, Any]]:
    """Per version and window: predictions, labelled ones, accuracy and mean absolute error.

    ``accuracy`` compares the served prediction with the label as JSON text (classes);
    ``mae`` is filled where both are numbers (regression). Shadow rows count under their
    own version, so a challenger in shadow gets its accuracy too.
    """
    if window not in WINDOWS:
        raise InputError(f"window must be one of {', '.join(WINDOWS)}; got {window!r}")
    params: list[Any] = [model]
    where = "p.model = ?"
    if since is not None:
        where += " AND p.ts >= make_timestamptz(?::BIGINT)"
        params.append(to_micros(since))
    sql = f"""
        WITH j AS (
            SELECT p.version, p.arm = 'shadow' AS shadow,
                   time_bucket(INTERVAL '{WINDOWS[window]}', p.ts) AS window_start,
                   json_extract(p.outputs, '$.prediction') AS pred, f.label AS label
            FROM predictions p LEFT JOIN feedback f USING (prediction_id)
            WHERE {where}
        )
        SELECT version, shadow, window_start, count(*) AS predictions,
               count(label) AS labelled,
               avg(CASE WHEN label IS NULL THEN NULL
                        WHEN pred::VARCHAR = label::JSON::VARCHAR THEN 1.0 ELSE 0.0 END)
                   AS accuracy,
               avg(abs(TRY_CAST(pred::VARCHAR AS DOUBLE) - TRY_CAST(label AS DOUBLE))) AS mae
        FROM j GROUP BY ALL ORDER BY window_start, version, shadow
    """
    df = lake.df(sql, params)
    rows = df.to_dict("records")
    for r in rows:
        r["window_start"] = r["window_start"].isoformat()
        for k in ("accuracy", "mae"):
            if r[k] is not None and r[k] != r[k]:  # NaN -> None for JSON
                r[k] = None
    return rows


def labelled(lake: Lake, model: str, since: datetime | str | None = None) -> list[dict[str, Any]]:
    """Served (non-shadow) predictions that have feedback: inputs, label, version, time."""
    params: list[Any] = [model]
    where = "p.model = ? AND p.arm <> 'shadow' AND p.inputs IS NOT NULL"
    if since is not None:
        where += " AND p.ts >= make_timestamptz(?::BIGINT)"
        params.append(to_micros(since))
    df = lake.df(
        "SELECT p.prediction_id, p.ts, p.version, p.inputs, f.label FROM predictions p "
        f"JOIN feedback f USING (prediction_id) WHERE {where} ORDER BY p.ts", params)
    return [_decode(r) for r in df.to_dict("records")]


def feedback_frame(lake: Lake, model: str, since: datetime | str | None = None,
                   target: str = "label") -> pd.DataFrame:
    """Labelled predictions as training data: one row per prediction, its inputs as received
    plus the true label in ``target`` (newest label wins; purged inputs are skipped)."""
    rows = labelled(lake, model, since)
    if not rows:
        raise NotFound(f"no labelled predictions of {model!r}"
                       f"{' since ' + str(since) if since else ''}; send feedback with "
                       "POST /api/feedback", model=model)
    records = []
    for r in rows:
        if not isinstance(r["inputs"], dict) or target in r["inputs"]:
            continue
        records.append({**r["inputs"], target: r["label"]})
    if not records:
        raise NotFound(f"the labelled predictions of {model!r} have no usable inputs "
                       f"(purged, or a column already named {target!r})", model=model)
    return pd.DataFrame.from_records(records)


def purge_inputs(ingest: Ingest, before: datetime) -> int:
    """Blank the raw inputs of predictions made before ``before``; returns rows blanked.

    Runs under the ingest's lock (``ingest`` must be open): segments holding old inputs are
    rewritten and swapped in with a new manifest; the old files are deleted after the
    compaction grace period, like compacted ones.
    """
    cutoff = to_micros(before)
    manifest = ingest.manifest
    segments = manifest.tables.get("predictions", [])
    blanked, replaced, fresh = 0, [], []
    for seg in segments:
        if seg.min_ts >= cutoff:
            fresh.append(seg)
            continue
        table = pq.read_table(ingest.lake_dir / seg.file)
        ts = pc.cast(table.column("ts"), pa.int64())
        old = pc.and_(pc.less(ts, cutoff), pc.is_valid(table.column("inputs")))
        n = pc.sum(old).as_py() or 0
        if not n:
            fresh.append(seg)
            continue
        idx = table.schema.get_field_index("inputs")
        inputs = pc.if_else(old, pa.scalar(None, pa.string()), table.column("inputs"))
        table = table.set_column(idx, "inputs", inputs)
        name = f"predictions/{manifest.version:012d}-p{uuid.uuid4().hex[:8]}.parquet"
        write_parquet(ingest.lake_dir, name, table)
        fresh.append(Segment(name, seg.rows, seg.min_ts, seg.max_ts))
        replaced.append(seg)
        blanked += int(n)
    if not replaced:
        return 0
    fsync_dir(ingest.lake_dir / "predictions")
    after = time.time() + defaults.COMPACT_GRACE_SECONDS
    new = Manifest(
        version=manifest.version + 1, last_id=manifest.last_id,
        audit_seq=manifest.audit_seq, audit_hash=manifest.audit_hash,
        tables={**manifest.tables, "predictions": fresh},
        garbage=[*manifest.garbage, *({"file": s.file, "after": after} for s in replaced)],
    )
    write_manifest(ingest.lake_dir, new)
    ingest.manifest = new
    return blanked


def parse_day(text: str) -> datetime:
    """A UTC datetime from ``YYYY-MM-DD`` or ISO 8601 text; InputError says the format."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
        to_micros(dt)  # the lake's range check
    except ValueError as exc:
        raise InputError(f"{text!r} is not a date the log can hold ({exc}); use YYYY-MM-DD "
                         "or an ISO 8601 time between 2000 and 2100") from None
    return dt
