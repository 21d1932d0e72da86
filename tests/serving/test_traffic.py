"""Traffic policies under real requests: weighted split (sticky by key) and shadow."""

from __future__ import annotations

from collections import Counter

import pytest

from mlwb.traffic import set_traffic
from tests.serving.conftest import World

N = 10_000


@pytest.fixture
def ab(world: World) -> str:
    """A model with the logistic champion v1 and the recognisable prior challenger v2."""
    name = world.model("lr", "prior")
    world.promote(name, 2, "challenger")
    return name


def prior_probability(world: World) -> float:
    return float(world.zoo.y.mean())


def test_split_is_within_two_percent_and_sticky(world: World, ab: str) -> None:
    set_traffic(world.services, world.people["ann"], ab, "split",
                {"champion": 0.7, "challenger": 0.3}, sticky=True)
    url, rows = f"/api/models/{ab}/predict", world.rows(20)
    arms: Counter[str] = Counter()
    for i in range(N):
        r = world.client.post(url, json={"instances": [rows[i % 20]]}, headers=world.headers)
        body = r.get_json()
        arms[body["arm"]] += 1
        version = body["version"]
        p1 = body["predictions"][0]["probabilities"]["1"]
        # The challenger's answers are recognisable: always the class prior.
        assert (version == "2") == (p1 == pytest.approx(prior_probability(world), abs=1e-12))
    assert abs(arms["challenger"] / N - 0.3) <= 0.02, arms
    # Sticky: one key always lands on the same arm; across keys the weights still hold.
    for key in ("alice", "bob", "carol"):
        got = {world.client.post(url, json={"instances": rows[:1], "traffic_key": key},
                                 headers=world.headers).get_json()["arm"] for _ in range(20)}
        assert len(got) == 1
    by_key = Counter(world.client.post(url, json={"instances": rows[:1]},
                                       headers={**world.headers, "X-Traffic-Key": f"k{i}"}
                                       ).get_json()["arm"] for i in range(400))
    assert abs(by_key["challenger"] / 400 - 0.3) <= 0.08, by_key
    world.land()
    logged = dict(world.services.lake.query(
        "SELECT arm, count(*) FROM predictions WHERE model = ? GROUP BY arm", [ab]))
    assert logged["challenger"] + logged["champion"] == N + 60 + 400


def test_shadow_scores_logs_and_never_answers(world: World, ab: str) -> None:
    set_traffic(world.services, world.people["ann"], ab, "shadow")
    url, rows = f"/api/models/{ab}/predict", world.rows(20)
    prior = prior_probability(world)
    ids = []
    for i in range(N):
        body = world.client.post(url, json={"instances": [rows[i % 20]]},
                                 headers=world.headers).get_json()
        assert body["version"] == "1" and body["arm"] == "champion"
        assert body["predictions"][0]["probabilities"]["1"] != pytest.approx(prior, abs=1e-9)
        ids.append(body["predictions"][0]["prediction_id"])
    world.land()
    lake = world.services.lake
    counts = dict(lake.query("SELECT arm, count(*) FROM predictions WHERE model = ? "
                             "GROUP BY arm", [ab]))
    assert counts == {"champion": N, "shadow": N}
    (joined,) = lake.query(
        "SELECT count(*) FROM predictions s JOIN predictions p USING (prediction_id) "
        "WHERE s.arm = 'shadow' AND p.arm = 'champion' AND s.version = '2' AND p.version = '1'")
    assert joined[0] == N
    rec = world.client.get(f"/api/predictions/{ids[0]}", headers=world.headers).get_json()
    assert rec["shadow"][0]["version"] == "2"
    assert rec["shadow"][0]["outputs"]["probabilities"]["1"] == pytest.approx(prior)
