"""A trained run folder served two ways, each giving the run's own predictions."""

from __future__ import annotations

from pathlib import Path


def assert_serves_its_own_predictions(run_dir: Path, data: Path, experiment: str) -> None:
    """`Predictor.from_run` (what `dptune predict` loads) and the run's MLflow pyfunc, logged in a
    run of `experiment`, label the val records as the run's `predictions/val.jsonl` does."""
    import mlflow
    import pandas as pd

    from dptune.inference import Predictor
    from dptune.run_folder import RunFolder
    from dptune.tracking import ensure_experiment
    from dptune.tracking.pyfunc import log_prompt_model

    folder = RunFolder(run_dir)
    predictor = Predictor.from_run(folder.path)
    val = predictor.task.read(str(data), "val")
    written = folder.read_predictions(predictor.task, "val")
    expected = [written[ex.key] for ex in val]
    records = [dict(ex.data) for ex in val]
    assert predictor.predict(records) == expected

    with mlflow.start_run(experiment_id=ensure_experiment(experiment)):
        info = log_prompt_model(folder.path)
    served = mlflow.pyfunc.load_model(info.model_uri).predict(pd.DataFrame(records))
    assert list(served) == expected
