"""Fresh MLflow sqlite stores for tests, without paying for the schema migrations each time.

Creating an MLflow sqlite database runs its migrations (about 10 s on 2 cores); copying a
migrated, empty one takes milliseconds. The empty template is kept in pytest's cache, keyed by
the MLflow version.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

DB_NAME = "mlflow.db"


def _migrate(db: Path) -> None:
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{db}").search_experiments(max_results=1)


def new_store(config: pytest.Config, folder: Path) -> Path:
    """An empty, migrated `folder/mlflow.db`; returns `folder`."""
    import mlflow

    folder.mkdir(parents=True, exist_ok=True)
    cache = getattr(config, "cache", None)  # None under `-p no:cacheprovider`
    if cache is None:
        _migrate(folder / DB_NAME)
        return folder
    template = Path(cache.mkdir("dptune-mlflow-store")) / f"empty-{mlflow.__version__}.db"
    if not template.is_file():
        scratch = template.with_name(f"building-{os.getpid()}.db")
        scratch.unlink(missing_ok=True)
        _migrate(scratch)
        os.replace(scratch, template)
    shutil.copyfile(template, folder / DB_NAME)
    return folder
