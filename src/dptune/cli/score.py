"""`dptune score`: score an official-format prediction file against a gold file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def score(
    task: Annotated[str, typer.Option("--task", help="SuperGLUE task, e.g. cb or MultiRC")],
    gold: Annotated[Path, typer.Option("--gold", help="Official gold jsonl, e.g. CB/val.jsonl")],
    predictions: Annotated[
        Path, typer.Option("--predictions", help="Predictions in the official submission jsonl")
    ],
) -> None:
    """Score predictions (official SuperGLUE submission jsonl) against a gold jsonl.

    Prints one JSON object of the task's metrics (fractions in [0, 1]).
    """
    from dptune.tasks.registry import get_task
    from dptune.tasks.submission import score_files

    metrics = score_files(get_task(task), gold, predictions)
    typer.echo(json.dumps(metrics))
