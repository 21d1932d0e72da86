"""Retention: the ingest blanks raw prediction inputs older than the setting, audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mlwb.ingest import Ingest
from mlwb.retention import ingest_hook
from mlwb.services import Services
from tests.factories import land


def test_retention_blanks_old_inputs_only(services: Services) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    for ts, pid in ((old, "old"), (datetime.now(UTC), "new")):
        services.sink.record("predictions", {
            "id": pid, "ts": ts, "prediction_id": pid, "model": "m", "version": "1",
            "inputs": {"x": 1.0}, "outputs": {"prediction": 1}})
    land(services)
    ingest = Ingest(services.redis, services.settings.lake_dir).open()
    try:
        ingest_hook(services.sink, keep_days=1)(ingest)
    finally:
        ingest.close()
    land(services)
    rows = dict(services.lake.query("SELECT id, inputs FROM predictions"))
    assert rows == {"old": None, "new": '{"x":1.0}'}
    audited = services.lake.query("SELECT actor, after FROM audit WHERE action = "
                                  "'predictions.purged'")
    assert audited == [("system:retention(1d)", '{"inputs_blanked":1}')]
