"""Small helpers the stages share: reading run folders and switching MLflow on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dptune.errors import DptuneError
from dptune.fileio import write_json

TRACKING_FILE = "tracking.json"  # written into a run folder once it is logged to MLflow


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DptuneError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DptuneError(f"{path}:{err.lineno}: invalid JSON") from None


def start_tracking() -> str:
    """Point MLflow at the project's store (or `MLFLOW_TRACKING_URI`) and check it answers."""
    from dptune import tracking

    uri = tracking.configure()
    return tracking.check_tracking_server(uri)


def read_tracking(run_dir: str | Path, uri: str) -> dict[str, Any] | None:
    """What an earlier call logged for `run_dir` to the store at `uri`, if anything."""
    path = Path(run_dir) / TRACKING_FILE
    if not path.is_file():
        return None
    record = read_json(path)
    return record if isinstance(record, dict) and record.get("tracking_uri") == uri else None


def write_tracking(run_dir: str | Path, record: dict[str, Any]) -> None:
    write_json(Path(run_dir) / TRACKING_FILE, record)
