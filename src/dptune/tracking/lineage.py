"""Lineage: the SuperGLUE files and the few-shot sample a run used, logged as its MLflow datasets
(`log_inputs`), each with its sha256 and whether that is the official file's.

Sources are recorded as paths relative to the project (or, outside it, the last parts of the
path: `superglue/CB/train.jsonl`), never as absolute paths of the training machine.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from dptune.data.fetch import expected_hashes, sha256_file
from dptune.tasks.registry import get_task
from dptune.tracking.client import project_root

DIGEST_CHARS = 32  # MLflow keeps at most 36 characters of a dataset digest
# A file on the local filesystem, as MLflow's own local dataset source records it.
LOCAL_SOURCE = "local"


def portable_path(path: Path, keep: int = 3) -> str:
    """`path` relative to the project when inside it, else its last `keep` parts."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(project_root()).as_posix()
    except ValueError:
        return Path(*resolved.parts[-keep:]).as_posix()


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # cached per file version
    return sha256_file(Path(path))


def file_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def run_files(config: dict[str, Any]) -> list[tuple[str, Path, str]]:
    """(context, file, official name or "") of each data file the run read."""
    task = get_task(str(config["task"]))
    folder = Path(str(config.get("data_dir", ""))) / task.dirname
    found = []
    for split in ("train", "val", "test"):
        path = folder / f"{split}.jsonl"
        if path.is_file():
            found.append((split, path, f"{task.dirname}/{split}.jsonl"))
    if config.get("sample") and Path(str(config["sample"])).is_file():
        found.append(("sample", Path(str(config["sample"])), ""))
    return found


def datasets(config: dict[str, Any]) -> list[DatasetInput]:
    """The run's data files as MLflow dataset inputs (metadata only: name, digest, source)."""
    official = expected_hashes()
    inputs = []
    for context, path, official_name in run_files(config):
        digest = file_sha256(path)
        name = official_name.removesuffix(".jsonl") if official_name else f"sample/{path.stem}"
        dataset = Dataset(
            name=name,
            digest=digest[:DIGEST_CHARS],
            source_type=LOCAL_SOURCE,
            source=json.dumps({"uri": portable_path(path)}),
        )
        tags = [
            InputTag(MLFLOW_DATASET_CONTEXT, context),
            InputTag("sha256", digest),
        ]
        if official_name:
            tags.append(InputTag("official", str(official.get(official_name) == digest).lower()))
        inputs.append(DatasetInput(dataset, tags=tags))
    return inputs


def log_lineage(client: MlflowClient, run_id: str, config: dict[str, Any]) -> int:
    """Log the run's datasets not yet among its inputs; how many were logged."""
    have = {
        (i.dataset.name, i.dataset.digest) for i in client.get_run(run_id).inputs.dataset_inputs
    }
    todo = [d for d in datasets(config) if (d.dataset.name, d.dataset.digest) not in have]
    if todo:
        client.log_inputs(run_id, datasets=todo)
    return len(todo)
