"""Atomic, resumable checkpoints without pickle: trainable tensors, optimizer, scheduler, RNG
states and position.

A checkpoint is the folder `checkpoints/step-<N>/`, written as a unit (`fileio.atomic_dir`):

    tensors.safetensors   every tensor: trainable/<name>, best_trainable/<name>,
                          optimizer/<param id>/<key>, rng/torch, rng/cuda/<device>,
                          rng/rank<k>/... (ranks 1.. of a data-parallel run)
    state.json            everything else (TrainState, optimizer param groups and non-tensor
                          state, scheduler state, python and numpy RNG states) and the sha256
                          of tensors.safetensors

`checkpoints/last.json` then names it, and older folders beyond the newest two are removed.
Loading parses JSON and safetensors only, so a checkpoint written by someone else can at worst
be refused, never run code. The newest readable checkpoint is loaded; one that is not readable
is skipped with a one-line warning on stderr (the previous one is kept for that).
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dptune.errors import DptuneError, one_line
from dptune.fileio import WriteFailed, atomic_dir, sha256_file, write_json
from dptune.run_folder import LEGACY_CHECKPOINT_FILE, RunFolder

FORMAT = "dptune-checkpoint"
VERSION = 1
STATE_FILE = "state.json"
TENSORS_FILE = "tensors.safetensors"
KEEP = 2  # checkpoint folders kept: the newest and the previous good one
LEGACY_GROUP_FACTOR = 50


@dataclass
class TrainState:
    """Where training stands; everything needed to continue it bit for bit."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of the current epoch already done
    best_score: float | None = None
    best_epoch: int | None = None
    best_dev: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    running_loss: float = 0.0  # summed train loss since the last logged step
    running_count: int = 0  # batches in running_loss
    group_factor: int | None = None  # batches per length-sorting mega-batch; set at the start


# ---- RNG states ------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_to_json(state: tuple) -> list[Any]:
    name, keys, pos, has_gauss, cached = state
    return [str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]


def _numpy_state_from_json(state: list[Any]) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached))


# ---- JSON with tuples --------------------------------------------------------------------------
_TUPLE = "__tuple__"


def _plain(obj: Any, where: str) -> Any:
    """`obj` as JSON values; tuples are tagged so that they come back as tuples."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int | float | np.integer | np.floating):
        return obj.item() if isinstance(obj, np.generic) else obj
    if isinstance(obj, tuple):
        return {_TUPLE: [_plain(v, where) for v in obj]}
    if isinstance(obj, list):
        return [_plain(v, where) for v in obj]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"checkpoint {where}: a mapping with non-string keys")
        return {k: _plain(v, where) for k, v in obj.items()}
    raise TypeError(f"checkpoint {where}: cannot store a {type(obj).__name__} as JSON")


def _unplain(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and _TUPLE in obj and isinstance(obj[_TUPLE], list):
        return tuple(obj[_TUPLE])
    return obj


def _rng_meta(rng: dict[str, Any]) -> dict[str, Any]:
    return {
        "python": _plain(rng["python"], "rng"),
        "numpy": _numpy_state_to_json(rng["numpy"]),
        "cuda": len(rng.get("cuda", [])),
    }


def _rng_values(meta: dict[str, Any], tensors: dict[str, torch.Tensor], prefix: str) -> dict:
    values: dict[str, Any] = {
        "python": meta["python"],
        "numpy": _numpy_state_from_json(meta["numpy"]),
        "torch": tensors[f"{prefix}torch"],
    }
    if meta["cuda"]:
        values["cuda"] = [tensors[f"{prefix}cuda/{i}"] for i in range(int(meta["cuda"]))]
    return values


# ---- saving ----------------------------------------------------------------------------------
def save_checkpoint(
    run_dir: Path | RunFolder,
    state: TrainState,
    trainable: dict[str, torch.Tensor],
    best_trainable: dict[str, torch.Tensor] | None,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rank_rngs: Sequence[dict[str, Any]] = (),
) -> Path:
    """Write `checkpoints/step-<state.step>/` as a unit, point `last.json` at it and remove
    older checkpoints beyond the newest two; the checkpoint folder. `rank_rngs`: the RNG
    states of ranks 1.. of a data-parallel run (this process is rank 0)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    folder = RunFolder(run_dir)
    tensors: dict[str, torch.Tensor] = {}
    for name, value in trainable.items():
        tensors[f"trainable/{name}"] = value
    for name, value in (best_trainable or {}).items():
        tensors[f"best_trainable/{name}"] = value

    optim = optimizer.state_dict()
    optim_state: dict[str, dict[str, Any]] = {}
    for param_id, param_state in optim["state"].items():
        plain: dict[str, Any] = {}
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer/{param_id}/{key}"] = value
            else:
                plain[key] = value
        optim_state[str(param_id)] = plain

    rng = rng_state()
    tensors["rng/torch"] = rng["torch"]
    for device, value in enumerate(rng.get("cuda", [])):
        tensors[f"rng/cuda/{device}"] = value
    ranks_meta = []
    for rank, other in enumerate(rank_rngs, start=1):
        tensors[f"rng/rank{rank}/torch"] = other["torch"]
        for device, value in enumerate(other.get("cuda", [])):
            tensors[f"rng/rank{rank}/cuda/{device}"] = value
        ranks_meta.append(_rng_meta(other))

    meta = {
        "format": FORMAT,
        "version": VERSION,
        "step": state.step,
        "state": _plain(asdict(state), "state"),
        "best_trainable": best_trainable is not None,
        "optimizer": {
            "param_groups": _plain(optim["param_groups"], "optimizer"),
            "state": _plain(optim_state, "optimizer"),
        },
        "scheduler": _plain(scheduler.state_dict(), "scheduler"),
        "rng": {**_rng_meta(rng), "ranks": ranks_meta},
    }
    target = folder.checkpoint_dir(state.step)
    try:
        with atomic_dir(target) as tmp:
            tensors_path = tmp / TENSORS_FILE
            tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
            save_file(tensors, str(tensors_path))
            meta["tensors_sha256"] = sha256_file(tensors_path)
            (tmp / STATE_FILE).write_text(json.dumps(meta) + "\n", encoding="utf-8")
        write_json(folder.checkpoint_path, {"checkpoint": target.name, "step": state.step})
    except (OSError, SafetensorError) as err:  # a full disk, a read-only volume
        if isinstance(err, WriteFailed):
            where, reason = err.path, err.reason
        else:
            where, reason = target, getattr(err, "strerror", None) or one_line(err)
        raise DptuneError(
            f"{where}: cannot write the checkpoint ({reason}); the previous checkpoints in "
            f"{folder.checkpoints_dir} are kept"
        ) from None
    _prune(folder, state.step)
    return target


def _prune(folder: RunFolder, step: int) -> None:
    """Keep the newest KEEP checkpoints up to `step`; remove later ones (a resume went back
    past them) and leftovers of interrupted writes."""
    kept = 0
    for number, path in folder.checkpoint_dirs():
        if number <= step and kept < KEEP:
            kept += 1
            continue
        shutil.rmtree(path, ignore_errors=True)
    for entry in folder.checkpoints_dir.iterdir():
        if entry.name.startswith(".step-") and entry.is_dir():  # atomic_dir's temporaries
            shutil.rmtree(entry, ignore_errors=True)


# ---- loading ---------------------------------------------------------------------------------
def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def load_checkpoint(
    run_dir: Path | RunFolder, warn: Callable[[str], None] = _warn
) -> dict[str, Any] | None:
    """The newest readable checkpoint of `run_dir` (None when it has none), as a mapping with
    state (a TrainState), trainable, best_trainable, optimizer, scheduler, rng and path.

    An unreadable checkpoint is skipped with one `warn` line when an older one remains; when
    none is readable, a DptuneError names the newest one's bad file and what to do."""
    folder = RunFolder(run_dir)
    candidates = [path for _, path in folder.checkpoint_dirs()]
    start_over = f"delete {folder.checkpoints_dir} to train from the start, or choose another --out"
    if not candidates:
        legacy = folder.path / LEGACY_CHECKPOINT_FILE
        if legacy.exists():
            raise DptuneError(
                f"{legacy}: a pickled checkpoint of an older dptune, which is never loaded "
                f"(unpickling can run code); {start_over}"
            )
        if folder.checkpoint_path.exists():
            raise DptuneError(
                f"{folder.checkpoint_path}: names a checkpoint folder that is missing; {start_over}"
            )
        return None
    first_problem = None
    for index, path in enumerate(candidates):
        try:
            return read_checkpoint(path)
        except DptuneError as err:
            first_problem = first_problem or str(err)
            if index + 1 < len(candidates):
                warn(f"{err}; resuming from the previous checkpoint {candidates[index + 1]}")
    raise DptuneError(f"{first_problem}; no readable checkpoint is left; {start_over}")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """One checkpoint folder; a corrupt, truncated or foreign one is one DptuneError line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state_path, tensors_path = path / STATE_FILE, path / TENSORS_FILE
    for needed in (state_path, tensors_path):
        if not needed.is_file():
            raise DptuneError(f"{needed}: missing, not a complete checkpoint")
    try:
        meta = json.loads(state_path.read_text(encoding="utf-8"), object_hook=_unplain)
    except json.JSONDecodeError as err:
        raise DptuneError(
            f"{state_path}:{err.lineno}: invalid JSON (corrupt or truncated)"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DptuneError(f"{state_path}: unreadable ({err.__class__.__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DptuneError(f"{state_path}: not a dptune checkpoint")
    if meta.get("version") != VERSION:
        raise DptuneError(
            f"{state_path}: checkpoint version {meta.get('version')!r}, this dptune reads "
            f"version {VERSION}"
        )
    try:
        digest = sha256_file(tensors_path)
    except OSError as err:
        raise DptuneError(f"{tensors_path}: unreadable ({err.__class__.__name__})") from None
    if digest != meta.get("tensors_sha256"):
        raise DptuneError(f"{tensors_path}: checksum mismatch (corrupt or truncated)")
    try:
        tensors = load_file(str(tensors_path))
    except (SafetensorError, OSError) as err:
        raise DptuneError(f"{tensors_path}: unreadable ({err.__class__.__name__})") from None
    try:
        return _assemble(meta, tensors, path)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise DptuneError(
            f"{state_path}: malformed checkpoint ({err.__class__.__name__}: {err})"
        ) from None


def _assemble(meta: dict[str, Any], tensors: dict[str, torch.Tensor], path: Path) -> dict:
    def group(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    optim_state: dict[int, dict[str, Any]] = {}
    for param_id, plain in meta["optimizer"]["state"].items():
        optim_state[int(param_id)] = dict(plain)
    for key, value in group("optimizer/").items():
        param_id, name = key.split("/", 1)
        optim_state.setdefault(int(param_id), {})[name] = value
    rng = meta["rng"]
    rng_values = _rng_values(rng, tensors, "rng/")
    rank_rngs = [
        _rng_values(other, tensors, f"rng/rank{rank}/")
        for rank, other in enumerate(rng.get("ranks", []), start=1)
    ]
    # Checkpoints written before the grouping cap have no group_factor: they sorted within
    # mega-batches of 50 batches, and their run goes on in that order.
    state = TrainState(**{"group_factor": LEGACY_GROUP_FACTOR, **meta["state"]})
    if state.step != meta["step"] or not isinstance(state.history, list):
        raise ValueError("inconsistent step")
    grouping = state.group_factor
    if grouping is not None and (type(grouping) is not int or grouping < 1):
        raise ValueError(f"group_factor {grouping!r} is not a positive integer")
    return {
        "path": path,
        "state": state,
        "trainable": group("trainable/"),
        "best_trainable": group("best_trainable/") if meta["best_trainable"] else None,
        "optimizer": {"state": optim_state, "param_groups": meta["optimizer"]["param_groups"]},
        "scheduler": meta["scheduler"],
        "rng": rng_values,
        "rank_rngs": rank_rngs,  # ranks 1.. of a data-parallel run
    }
