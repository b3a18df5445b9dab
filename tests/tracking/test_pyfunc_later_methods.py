"""ULPT and DePT runs register and serve as MLflow pyfuncs like DPT's: the served model predicts
what the run folder predicts."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from dptune.inference import Predictor
from dptune.tracking import log_run_folder, register_run_folder, registered_model_name

RECORDS = [
    {"premise": "It is raining, yes.", "hypothesis": "It rains."},
    {"premise": "The sun is out.", "hypothesis": "It rains."},
    {"premise": "Nobody came to the party.", "hypothesis": "The party was crowded."},
]


# DePT's update at a large learning rate, so that two steps move it away from zero
@pytest.mark.parametrize(
    ("method", "fields"), [("ulpt", {"rank": 2}), ("dept", {"rank": 3, "update_lr": 0.5})]
)
def test_a_trained_run_serves_from_the_registry(method, fields, tracking, tmp_path, tiny_t5_dir):
    from dptune.run import train
    from helpers.small_data import small_run_config, small_task_copy

    run = tmp_path / "run"
    data = small_task_copy(tmp_path / "data")
    train(small_run_config(tiny_t5_dir, data, run, method=method, bottleneck=None, **fields),
          progress=False)  # fmt: skip
    run_id = log_run_folder(run, stage="train")
    version = register_run_folder(run_id, run)
    name = registered_model_name("cb", str(tiny_t5_dir))
    if method == "dept":
        assert Predictor.from_run(run).backbone.prompt.update().abs().max() > 0
    served = mlflow.pyfunc.load_model(f"models:/{name}/{version}").predict(pd.DataFrame(RECORDS))
    assert list(served) == Predictor.from_run(run).predict(RECORDS)
