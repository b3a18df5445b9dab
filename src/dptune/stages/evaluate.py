"""Stage `evaluate`: re-score a run's submission files against the gold labels.

Independent of the trainer's own numbers: it reads `predictions/val.jsonl` (official submission
format) and the official val file, rebuilds the run's protocol split, and scores
- `test`: the protocol's test split (what the results table reports),
- `val`: the whole official val set (comparable to published val numbers; under `heldout` half
  of it chose the epoch),
records whether `test` matches the run's metrics.json (with `decode: generate` it may not:
metrics.json counts an invalid generation wrong, the submission file holds the first label),
and checks that `predictions/test.jsonl` labels every official test example (ready for the
leaderboard), and keeps each test example's score of the paper metric (`test_outcomes`, for
the report's bootstrap intervals). Writes one json of every run's eval record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dptune.errors import DptuneError
from dptune.fileio import write_json
from dptune.run_folder import RunFolder
from dptune.stages.bootstrap import outcomes
from dptune.stages.common import start_tracking
from dptune.tasks.base import Example
from dptune.tasks.common import SuperGlueTask
from dptune.tasks.protocols import split_for_protocol
from dptune.tasks.registry import task_of

TOLERANCE = 1e-9


def _read_submission(
    task: SuperGlueTask, folder: RunFolder, split: str, examples: list[Example]
) -> dict[Any, Any]:
    """Predictions of the run's `split` submission file, which must label exactly `examples`."""
    path = folder.predictions_path(split)
    predicted = folder.read_predictions(task, split)
    wanted = {ex.key for ex in examples}
    missing = [ex for ex in examples if ex.key not in predicted]
    if missing:
        raise DptuneError(f"{path}: no prediction for idx {task.describe_key(missing[0].key)}")
    extra = [key for key in predicted if key not in wanted]
    if extra:
        raise DptuneError(f"{path}: idx {task.describe_key(extra[0])} is not in the gold file")
    return predicted


def _agrees(ours: dict[str, float], theirs: dict[str, Any] | None) -> bool:
    if not theirs:
        return False
    return all(
        name in theirs and math.isclose(value, theirs[name], abs_tol=TOLERANCE)
        for name, value in ours.items()
    )


def evaluate_run(run_dir: str | Path, data_dir: str | Path) -> dict[str, Any]:
    """The eval record of one finished run folder."""
    folder = RunFolder(run_dir)
    config = folder.read_config()
    metrics = folder.read_metrics()
    task = task_of(config)
    val = task.read(str(data_dir), "val")
    train = task.read(str(data_dir), "train")
    splits = split_for_protocol(task.name, train, val, config["protocol"])
    predicted = _read_submission(task, folder, "val", val)
    test_metrics = task.score(splits.test, predicted)
    record: dict[str, Any] = {
        "run": folder.path.name,
        "task": task.name,
        "method": config["method"],
        "seed": config["seed"],
        "protocol": splits.protocol,
        "optimistic": splits.optimistic,
        "primary_metric": task.primary_metric,
        "test": test_metrics,
        "val": task.score(val, predicted),
        "matches_run_metrics": _agrees(test_metrics, metrics.get("test")),
        # per-example scores of the paper metric: the report's bootstrap intervals
        "test_outcomes": outcomes(task, splits.test, predicted, task.paper_metric),
    }
    test_file = Path(data_dir) / task.dirname / "test.jsonl"
    if test_file.is_file():
        labelled = _read_submission(task, folder, "test", task.read(str(data_dir), "test"))
        submission = folder.predictions_path("test")
        record["submission"] = {"file": str(submission), "predictions": len(labelled)}
    return record


def evaluate_stage(
    run_dirs: Sequence[str | Path], data_dir: str | Path, out: str | Path, *, track: bool = True
) -> dict[str, Any]:
    """Score each run, write `{run name: eval record}` to `out` (json), and with `track` add the
    scores to each run's MLflow run as `eval_test_<metric>` / `eval_val_<metric>`."""
    records = {Path(run_dir).name: evaluate_run(run_dir, data_dir) for run_dir in run_dirs}
    if len(records) != len(run_dirs):
        raise DptuneError("evaluate: two run folders share a name")
    write_json(out, records)
    if track:
        start_tracking()
        for run_dir in run_dirs:
            _log_eval(run_dir, records[Path(run_dir).name])
    return records


def _log_eval(run_dir: str | Path, record: dict[str, Any]) -> str:
    from dptune.tracking import log_stage_results, tracking_uri

    logged = RunFolder(run_dir).read_tracking(tracking_uri())
    metrics = {
        f"eval_{split}_{name}": value
        for split in ("test", "val")
        for name, value in record[split].items()
    }
    tags = {"dvc_stage": "evaluate", "task": record["task"], "method": record["method"]}
    return log_stage_results(
        "evaluate",
        metrics=metrics,
        tags={**tags, "eval_matches_run_metrics": record["matches_run_metrics"]},
        run_id=logged["run_id"] if logged else None,
        run_name=f"eval-{record['run']}",
    )
