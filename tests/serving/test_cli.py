"""`wb predictions`: quality per version, and the audited purge of raw inputs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from mlwb.ingest import Ingest
from mlwb.retention import ingest_hook
from tests.factories import cli_invoker
from tests.serving.conftest import World


@pytest.fixture
def run(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    yield from cli_invoker(world.services.settings, monkeypatch)


def test_purge_blanks_old_inputs_keeps_the_rest_and_is_audited(world: World, predict,
                                                               run) -> None:
    name = world.model("lr")
    body = predict(name, {"instances": world.rows(3)}).get_json()
    pid = body["predictions"][0]["prediction_id"]
    world.client.post("/api/feedback", json={"prediction_id": pid, "label": 0},
                      headers=world.headers)
    world.land()
    out = run("predictions", "quality", name, "--json")
    assert out.exit_code == 0 and json.loads(out.output.splitlines()[0])["labelled"] == 1
    assert run("predictions", "purge", "--before", "yesterday", "--yes").exit_code == 2
    assert run("predictions", "purge", "--before", "2999-01-01", "--yes").exit_code == 2
    # Nothing is older than yesterday: nothing blanked.
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert "of 0 prediction" in run("predictions", "purge", "--before", day, "--yes").output
    # While an ingest holds the lake, the purge is carried out by it (the only writer).
    holder = Ingest(world.services.redis, world.services.settings.lake_dir).open()
    hook = ingest_hook(world.services.sink, keep_days=0)
    result: dict[str, object] = {}
    worker = threading.Thread(target=lambda: result.setdefault(
        "done", run("predictions", "purge", "--before", "2099-01-01", "--yes")))
    try:
        worker.start()
        deadline = time.monotonic() + 60
        while worker.is_alive() and time.monotonic() < deadline:
            hook(holder)
            time.sleep(0.05)
        worker.join(timeout=5)
    finally:
        holder.close()
    done = result["done"]
    assert done.exit_code == 0 and "of 3 prediction" in done.output, done.output
    lake = world.services.lake
    assert lake.query("SELECT count(*), count(inputs), count(outputs) FROM predictions") == [
        (3, 0, 3)]
    rec = world.client.get(f"/api/predictions/{pid}", headers=world.headers).get_json()
    assert rec["inputs"] is None and rec["feedback"]["label"] == 0
    world.land()
    actions = [r[0] for r in lake.query("SELECT action FROM audit")]
    assert "predictions.purged" in actions


def test_feedback_becomes_a_data_set_version(world: World, predict, run) -> None:
    name = world.model("lr")
    assert run("data", "from-feedback", name).exit_code == 2  # nothing labelled yet
    body = predict(name, {"instances": world.rows(6)}).get_json()
    for i, p in enumerate(body["predictions"][:4]):
        world.client.post("/api/feedback", json={"prediction_id": p["prediction_id"],
                                                 "label": int(world.zoo.y.iloc[i])},
                          headers=world.headers)
    world.land()
    out = run("data", "from-feedback", name, "--name", "bc-fb")
    assert out.exit_code == 0, out.output
    assert "4 labelled predictions, 31 columns, target label" in out.output
    ref = out.output.split(":")[0]
    from mlwb.datasets import DatasetStore

    store = DatasetStore(world.services.settings, world.services.engine, world.services.sink)
    frame = store.load(store.resolve(ref))
    assert list(frame["label"]) == [int(v) for v in world.zoo.y.iloc[:4]]
    assert set(frame.columns) == {*world.zoo.X.columns, "label"}
