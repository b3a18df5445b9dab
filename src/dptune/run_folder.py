"""The run folder: its layout and typed readers and writers for every file in it.

    config.yaml               the resolved TrainConfig (written first, when training starts)
    checkpoints/step-<N>/     resumable state at step N (tensors.safetensors + state.json, no
                              pickle); the newest two are kept
    checkpoints/last.json     names the newest checkpoints/step-<N>/
    .lock                     held (flock) by the process training into the folder
    history.jsonl             one row per logging step and per epoch end
    prompt.safetensors        P (c x e), prompt methods only (DePT: its m x e prompt, which
                              is not all its inference needs; `read_prompt` refuses it)
    trainable.safetensors     every trainable tensor (prompt factors, LoRA matrices, head); not
                              for finetune
    adapter/                  a PEFT prompt-tuning adapter (seq2seq, causal) or head + prompt
                              (encoder); for lora PEFT's LoRA adapter (and an encoder's head);
                              DePT's own format (prompts/dept/adapter.py); for finetune on an
                              encoder with a linear head, that head
    model/                    the whole fine-tuned model and tokenizer (method finetune)
    predictions/{val,test}.jsonl   official submission files
    metrics.json              written last: a folder with it is complete
    tracking.json             the folder's MLflow run: store URI, run id (written when live
                              tracking starts, so --resume and a retried task continue that
                              run; before it, the claim that tags the run being created, and
                              its experiment), `logged` (the finished folder is in it),
                              registered version

Every writer is atomic. Every reader fails with one DptuneError line naming the file. This
module imports neither torch nor the tracking or pipeline tools at import time.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dptune.errors import DptuneError
from dptune.fileio import atomic_dir, atomic_path, read_json, write_json, write_text
from dptune.redact import redact_uri

if TYPE_CHECKING:
    import torch

    from dptune.config import TrainConfig
    from dptune.tasks.base import Example
    from dptune.tasks.common import SuperGlueTask

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.jsonl"
PROMPT_FILE = "prompt.safetensors"
TRAINABLE_FILE = "trainable.safetensors"
ADAPTER_DIR = "adapter"
# in adapter/: the config of an encoder's head and prompt (backbones.encoder.ADAPTER_CONFIG_FILE)
HEAD_CONFIG_FILE = "dptune_adapter.json"
MODEL_DIR = "model"
PREDICTIONS_DIR = "predictions"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_FILE = f"{CHECKPOINTS_DIR}/last.json"  # a pointer: {"checkpoint": "step-<N>", ...}
CHECKPOINT_STEP_PREFIX = "step-"  # checkpoints/step-<N>/ holds the state after N steps
LEGACY_CHECKPOINT_FILE = f"{CHECKPOINTS_DIR}/last.pt"  # pickled; never loaded
LOCK_FILE = ".lock"
TRACKING_FILE = "tracking.json"
FIGURES_DIR = "figures"
SPLITS: tuple[str, ...] = ("val", "test")
PROMPT_KEY = "prompt"  # the tensor's name in prompt.safetensors


def read_json_file(path: Path) -> Any:
    return read_json(path, missing="missing; the run did not finish")


def read_history_file(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a `history.jsonl`, in file order; a bad line is reported as path:line."""
    path = Path(path)
    if not path.is_file():
        raise DptuneError(f"{path}: history file not found")
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise DptuneError(f"{path}:{lineno}: invalid JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise DptuneError(f"{path}:{lineno}: expected an object with an integer 'step'")
        rows.append(row)
    return rows


class RunFolder:
    """One run folder (it need not exist yet)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ---- layout -------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def history_path(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def prompt_path(self) -> Path:
        return self.path / PROMPT_FILE

    @property
    def trainable_path(self) -> Path:
        return self.path / TRAINABLE_FILE

    @property
    def adapter_dir(self) -> Path:
        return self.path / ADAPTER_DIR

    @property
    def model_dir(self) -> Path:
        """The fine-tuned model (method finetune)."""
        return self.path / MODEL_DIR

    @property
    def predictions_dir(self) -> Path:
        return self.path / PREDICTIONS_DIR

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def checkpoint_path(self) -> Path:
        """`checkpoints/last.json`, naming the newest checkpoint folder."""
        return self.path / CHECKPOINT_FILE

    def checkpoint_dir(self, step: int) -> Path:
        """`checkpoints/step-<step>/`, the resumable state after `step` optimizer steps."""
        return self.checkpoints_dir / f"{CHECKPOINT_STEP_PREFIX}{step}"

    def checkpoint_dirs(self) -> list[tuple[int, Path]]:
        """The checkpoint folders as (step, folder), newest (highest step) first."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = []
        for entry in self.checkpoints_dir.iterdir():
            number = entry.name.removeprefix(CHECKPOINT_STEP_PREFIX)
            is_step = entry.name != number and number.isascii() and number.isdigit()
            if is_step and entry.is_dir():
                found.append((int(number), entry))
        return sorted(found, key=lambda item: item[0], reverse=True)

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def tracking_path(self) -> Path:
        return self.path / TRACKING_FILE

    def predictions_path(self, split: str) -> Path:
        """`predictions/<split>.jsonl`, the official submission file of `val` or `test`."""
        if split not in SPLITS:
            raise DptuneError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
        return self.predictions_dir / f"{split}.jsonl"

    # ---- state --------------------------------------------------------------------------------
    def is_complete(self) -> bool:
        """metrics.json is written last: with it, every other file of the run is there."""
        return self.metrics_path.is_file()

    def has_checkpoint(self) -> bool:
        """Whether `checkpoints/` holds anything a resume would read (good or not)."""
        if not self.checkpoints_dir.is_dir():
            return False
        return any(not entry.name.startswith(".") for entry in self.checkpoints_dir.iterdir())

    def has_config(self) -> bool:
        return self.config_path.is_file()

    # ---- config.yaml --------------------------------------------------------------------------
    def write_config(self, cfg: TrainConfig) -> None:
        write_text(self.config_path, cfg.to_yaml())

    def read_config(self) -> dict[str, Any]:
        """config.yaml as a mapping of fields (as written, not validated)."""
        from dptune.config import load_yaml

        if not self.config_path.is_file():
            raise DptuneError(f"{self.config_path}: missing; not a dptune run folder")
        return load_yaml(self.config_path)

    def trains_backbone(self) -> bool:
        """Whether the run's method trains the backbone itself (finetune: the folder holds the
        whole model, `model/`), from config.yaml; False for a method this version lacks."""
        from dptune.prompts.registry import get_method

        method = self.read_config().get("method")
        try:
            return get_method(str(method)).trains_backbone
        except ValueError:
            return False

    def lacks_trained_head(self) -> bool:
        """A finished finetune folder whose backbone trained a head (metrics.json's
        `head_params`) but that holds no `adapter/` with it: written before dptune exported a
        fine-tuned encoder's head, so its `model/` alone predicts with an untrained head."""
        if not self.is_complete() or not self.trains_backbone():
            return False
        head_params = self.read_metrics().get("head_params")
        has_head = isinstance(head_params, int) and head_params > 0
        return has_head and not (self.adapter_dir / HEAD_CONFIG_FILE).is_file()

    def read_train_config(self, **overrides: Any) -> TrainConfig:
        """config.yaml validated into a TrainConfig, with `overrides` replacing fields."""
        from dptune.config import make_stored_config

        values = {**self.read_config(), **overrides}
        return make_stored_config(values, source=str(self.config_path))

    # ---- metrics.json -------------------------------------------------------------------------
    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        write_json(self.metrics_path, dict(metrics))

    def read_metrics(self) -> dict[str, Any]:
        data = read_json_file(self.metrics_path)
        if not isinstance(data, dict):
            raise DptuneError(f"{self.metrics_path}: expected a JSON object")
        return data

    # ---- history.jsonl ------------------------------------------------------------------------
    def write_history(self, rows: Sequence[Mapping[str, Any]]) -> None:
        write_text(self.history_path, "".join(json.dumps(dict(r)) + "\n" for r in rows))

    def read_history(self, missing_ok: bool = False) -> list[dict[str, Any]]:
        """The history rows; with `missing_ok`, none when the file is absent."""
        if missing_ok and not self.history_path.is_file():
            return []
        return read_history_file(self.history_path)

    # ---- tensors ------------------------------------------------------------------------------
    def write_prompt(self, prompt: torch.Tensor) -> None:
        _save_tensors(self.prompt_path, {PROMPT_KEY: prompt})

    def read_prompt(self) -> torch.Tensor:
        """P (c x e), for a run whose prompt is all its inference needs (`MethodSpec.
        plain_prompt`); one line for a run that also changes the source embeddings (DePT)."""
        from dptune.prompts.registry import get_method

        method = str(self.read_config().get("method")) if self.has_config() else None
        try:
            plain = method is None or get_method(method).plain_prompt
        except ValueError:
            plain = True  # a method this version lacks: its P is read as it is
        if not plain:
            raise DptuneError(
                f"{self.path}: a {method} run is not a plain prompt (it also updates the source "
                "embeddings; its adapter/ is in its own format): load it with dptune predict"
            )
        return _load_tensors(self.prompt_path)[PROMPT_KEY]

    def write_trainable(self, state: Mapping[str, torch.Tensor]) -> None:
        _save_tensors(self.trainable_path, state)

    def read_trainable(self) -> dict[str, torch.Tensor]:
        return _load_tensors(self.trainable_path)

    @contextlib.contextmanager
    def writing_adapter(self) -> Iterator[Path]:
        """A temporary folder that becomes `adapter/` when the block succeeds."""
        with atomic_dir(self.adapter_dir) as tmp:
            yield tmp

    @contextlib.contextmanager
    def writing_model(self) -> Iterator[Path]:
        """A temporary folder that becomes `model/` when the block succeeds."""
        with atomic_dir(self.model_dir) as tmp:
            yield tmp

    # ---- predictions --------------------------------------------------------------------------
    def write_predictions(
        self,
        task: SuperGlueTask,
        examples: Sequence[Example],
        predictions: Mapping[Any, Any],
        split: str,
    ) -> Path:
        from dptune.tasks.submission import write_predictions

        path = self.predictions_path(split)
        write_predictions(task, examples, predictions, path)
        return path

    def read_predictions(self, task: SuperGlueTask, split: str) -> dict[Any, Any]:
        """The labels of `predictions/<split>.jsonl` by Example.key."""
        from dptune.tasks.submission import read_predictions

        path = self.predictions_path(split)
        if not path.is_file():
            raise DptuneError(f"{path}: missing; the run did not finish")
        return read_predictions(task, path)

    # ---- tracking.json ------------------------------------------------------------------------
    def read_tracking(self, uri: str | None = None) -> dict[str, Any] | None:
        """What was logged for this run (to the store at `uri`, when given), if anything."""
        if not self.tracking_path.is_file():
            return None
        record = read_json_file(self.tracking_path)
        if not isinstance(record, dict):
            return None
        if uri is not None and record.get("tracking_uri") != redact_uri(uri):
            return None
        return record

    def write_tracking(self, record: Mapping[str, Any]) -> None:
        """The record, with the password of a `user:pass@` tracking URI hidden."""
        record = dict(record)
        if isinstance(record.get("tracking_uri"), str):
            record["tracking_uri"] = redact_uri(record["tracking_uri"])
        write_json(self.tracking_path, record)

    def mlflow_run_id(self, uri: str) -> str | None:
        """The id of this folder's MLflow run in the store at `uri`, if it has one."""
        record = self.read_tracking(uri) or {}
        run_id = record.get("run_id")
        return run_id if isinstance(run_id, str) and run_id else None


def _save_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise DptuneError(f"{path}: missing; the run did not finish")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise DptuneError(f"{path}: unreadable ({err.__class__.__name__})") from None
