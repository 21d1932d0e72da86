"""Data sets: content-hashed versions stored once, profiles, clear refusals, training on one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.runner import run_experiment
from experiments.tracking import client_for
from jobs.service import prepare
from mlwb.datasets import DatasetStore
from mlwb.errors import InputError, NotFound, Unprocessable
from mlwb.services import Services
from tests.factories import OPERATOR


def churn(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    plan = rng.choice(["basic", "pro", "team"], n)
    usage = rng.normal(10, 3, n).round(2)
    usage[3] = np.nan
    return pd.DataFrame({"usage": usage, "plan": plan,
                         "churned": (usage < 9).astype(int)})


@pytest.fixture
def store(services: Services) -> DatasetStore:
    return DatasetStore(services.settings, services.engine, services.sink)


def test_same_data_is_one_version_whatever_the_format(store: DatasetStore,
                                                      tmp_path: Path) -> None:
    df = churn()
    df.to_csv(tmp_path / "c.csv", index=False)
    df.to_parquet(tmp_path / "c.parquet", index=False)
    a = store.add(tmp_path / "c.csv", "churn", "churned", OPERATOR)
    b = store.add(tmp_path / "c.parquet", "churn", "churned", OPERATOR)
    assert a.version == b.version and len(store.list("churn")) == 1
    prof = a.profile["columns"]
    assert prof["usage"]["nulls"] == 1 and prof["usage"]["kind"] == "numeric"
    assert prof["plan"]["kind"] == "categorical"
    assert set(prof["plan"]["categories"]) == {"basic", "pro", "team"}
    assert store.resolve("churn").version == a.version
    assert store.resolve(f"churn@{a.version[:8]}").version == a.version
    df.iloc[:60].to_csv(tmp_path / "half.csv", index=False)
    c = store.add(tmp_path / "half.csv", "churn", "churned", OPERATOR)
    assert c.version != a.version and store.resolve("churn").version == c.version
    assert len(store.load(a)) == 120


@pytest.mark.parametrize(("content", "name", "target", "message"), [
    ("a,b\n1,2\n", "x.csv", "label", "no target column 'label'"),
    ("a,label\n", "x.csv", "label", "has no rows"),
    ("\x00\x01garbage", "x.parquet", "label", "not a readable parquet"),
    ("a,label\n1,2\n", "x.xlsx", "label", "unsupported file type"),
    ("label\n1\n", "x.csv", "label", "only the target column"),
])
def test_bad_files_are_refused_with_a_clear_message(store: DatasetStore, tmp_path: Path,
                                                    content: str, name: str, target: str,
                                                    message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        store.add(path, "bad", target, OPERATOR)
    with pytest.raises(InputError, match="invalid"):
        store.add(path, "9 bad name", target, OPERATOR)


def test_training_on_a_data_set_pins_and_records_its_version(services: Services,
                                                            store: DatasetStore,
                                                            tmp_path: Path) -> None:
    churn().to_csv(tmp_path / "c.csv", index=False)
    dv = store.add(tmp_path / "c.csv", "churn", "churned", OPERATOR)
    _, params = prepare(services, "wine_rf", {"dataset": "churn", "n_estimators": 5})
    assert params["dataset"] == dv.ref  # pinned at submit time
    result = run_experiment(services, "wine_rf", params)
    tags = client_for(services.settings).get_run(result.run_id).data.tags
    assert tags["wb.dataset_version"] == dv.version and tags["wb.dataset"] == "churn"
    with pytest.raises(Unprocessable, match="numeric features"):
        run_experiment(services, "breast_cancer_mlp", {"dataset": dv.ref, "epochs": 1})
    with pytest.raises(NotFound, match="wb data add"):
        prepare(services, "wine_rf", {"dataset": "nope"})
