"""Stage `sample`: the few-shot idx files for tasks x K x seeds (a versioned artifact).

Samples come from `dptune.tasks.sampling`, drawn from the training examples no protocol
evaluates on, so every method sees the identical sample for a given (task, K, seed).
Files: `<out>/<task>/k<K>-s<seed>.json`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dptune.fileio import atomic_dir
from dptune.stages.params import sample_path
from dptune.tasks.protocols import training_pool
from dptune.tasks.registry import get_task
from dptune.tasks.sampling import sample_idx, write_sample


def sample_stage(
    data_dir: str | Path,
    tasks: Sequence[str],
    shots: Sequence[int],
    seeds: Sequence[int],
    out: str | Path,
) -> dict[str, Any]:
    """Write one sample file per (task, K, seed); the folder appears only once all are written."""
    written: list[str] = []
    with atomic_dir(out) as tmp:
        for name in tasks:
            task = get_task(name)
            pool = training_pool(task.name, task.read(str(data_dir), "train"))
            (Path(tmp) / task.name).mkdir(parents=True, exist_ok=True)  # even with no K
            for k in shots:
                for seed in seeds:
                    path = sample_path(tmp, task.name, k, seed)
                    write_sample(path, task.name, k, seed, sample_idx(task, pool, k, seed))
                    written.append(str(sample_path(out, task.name, k, seed)))
    return {"samples": written, "out": str(out)}
