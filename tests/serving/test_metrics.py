"""Prometheus metrics: per model, version and arm, summed over processes via Redis."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from api import create_app
from tests.serving.conftest import World


def samples(text: str, model: str) -> dict[tuple[str, ...], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.labels.get("model") == model:
                key = (s.name, s.labels.get("arm", ""), s.labels.get("code", ""),
                       s.labels.get("le", ""))
                out[key] = s.value
    return out


def test_counts_from_two_processes_add_up(world: World, predict) -> None:
    name = world.model("lr")
    for _ in range(3):
        assert predict(name, {"instances": world.rows(1)}).status_code == 200
    assert predict(name, {"instances": [{"x": 1}]}).status_code == 400
    # A second app (another gunicorn worker, in effect) with its own in-memory counters.
    other = create_app(world.services.settings)
    other_client = other.test_client()
    other_client.post(f"/api/models/{name}/predict", json={"instances": world.rows(2)},
                      headers=world.headers)
    other.extensions["wb_serving_metrics"].flush()
    assert world.client.get("/metrics").status_code == 401
    text = world.client.get("/metrics", headers=world.headers).get_data(as_text=True)
    got = samples(text, name)
    assert got[("wb_predict_requests_total", "champion", "200", "")] == 4
    assert got[("wb_predict_errors_total", "champion", "400", "")] == 1
    assert got[("wb_predict_latency_seconds_count", "champion", "", "")] == 5
    assert got[("wb_predict_latency_seconds_bucket", "champion", "", "+Inf")] == 5
