"""`dptune track RUN_DIR`: log, or complete, a run folder's MLflow run from the folder alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def track(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (finished, or abandoned)")],
    stage: Annotated[
        str | None,
        typer.Option("--stage", help="DVC stage tag of a new run (default: train, or probe)"),
    ] = None,
) -> None:
    """Log a finished run folder to MLflow (MLFLOW_TRACKING_URI, else the project's store), or
    complete its run: safe to repeat, nothing is logged twice. A folder whose training died
    without ending its run (SIGKILL, out of memory, a lost node) has that run marked KILLED."""
    from dptune.tracking import check_tracking_access, configure
    from dptune.tracking.runs import track_run_folder

    check_tracking_access(configure())
    record = track_run_folder(run_dir, stage=stage)
    typer.echo(json.dumps({**record, "run_dir": str(run_dir)}))
