"""Small helpers the stages share: reading JSON outputs and switching MLflow on (run folders are
read through `dptune.run_folder.RunFolder`)."""

from __future__ import annotations

from dptune.fileio import read_json

__all__ = ["read_json", "start_tracking"]


def start_tracking() -> str:
    """Point MLflow at the project's store (or `MLFLOW_TRACKING_URI`) and check it answers."""
    from dptune import tracking

    uri = tracking.configure()
    return tracking.check_tracking_server(uri)
