"""`dptune promote`: move the `champion` alias in the MLflow model registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

PROMOTE_HELP = (
    "Promote the best (or a given) registered prompt version to alias `champion`."
    "\n\n"
    "The candidate is --version, or the version with the highest --metric (default: the task's "
    "primary test metric, e.g. accuracy -> tag test_accuracy). It becomes champion only if it "
    "beats the current champion on that metric; a tie keeps the champion. The reason is "
    "recorded in the version's tags (promoted_because, previous_champion, ...). Runs go to "
    "MLFLOW_TRACKING_URI, else sqlite:///<root>/mlflow.db."
    "\n\n"
    "Exit codes: 0 whether or not the champion moved (one summary line on stdout); 2 for an "
    "unknown model, version or metric, or an unreachable tracking server."
)


def promote(
    model: Annotated[str, typer.Option(help="Registered model, e.g. dptune-cb-minilm")],
    metric: Annotated[
        str | None,
        typer.Option(help="Metric to compare: accuracy (= test_accuracy), dev_accuracy, ..."),
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="Promote this version (if it beats the champion)")
    ] = None,
    root: Annotated[
        Path, typer.Option(help="Project folder holding mlflow.db (without MLFLOW_TRACKING_URI)")
    ] = Path("."),
) -> None:
    from dptune.tracking import check_tracking_server, configure
    from dptune.tracking import promote as promote_version

    check_tracking_server(configure(root), must_exist=True)
    print(promote_version(model, metric=metric, version=version).summary)


promote.__doc__ = PROMOTE_HELP
