"""`dptune promote`: move the `champion` alias in the MLflow model registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

PROMOTE_HELP = (
    "Promote the best (or a given) registered prompt version to alias `champion`."
    "\n\n"
    "The candidate is --version, or the version with the highest dev --metric (default: the "
    "task's primary metric, e.g. accuracy -> tag dev_accuracy; never a test metric) among those "
    "comparable with the champion (same task, backbone, protocol, text format and data). It "
    "becomes champion only if it beats the current champion on that metric (a tie keeps the "
    "champion) and it loads and predicts its input example. The reason is recorded in the "
    "versions' tags (promoted_because, promoted_by, previous_champion, ...). Runs go to "
    "MLFLOW_TRACKING_URI, else sqlite:///<root>/mlflow.db."
    "\n\n"
    "Exit codes: 0 whether or not the champion moved (one summary line on stdout); 2 for an "
    "unknown model, version or metric, a version that does not serve, or an unreachable "
    "tracking server."
)


def promote(
    model: Annotated[str, typer.Option(help="Registered model, e.g. dptune-cb-minilm")],
    metric: Annotated[
        str | None,
        typer.Option(help="Dev metric to compare: accuracy (= dev_accuracy), f1_macro, ..."),
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
