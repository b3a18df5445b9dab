"""Stage `sweep`: train the cells of one sweep (an analysis: points of some parameters for some
methods and tasks) that the grid does not already hold.

`cfgs` are the sweep's own cells (`Plan.sweep_cells`), all in one folder the stage owns
(`runs/sweeps/<sweep>/`). The folder persists between calls: a finished cell with the same
config is reused, a cell whose config changed is retrained, and a folder of a point no longer
in the sweep is removed, so changing one point retrains that point only.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dptune.config import TrainConfig
from dptune.errors import DptuneError
from dptune.run_folder import RunFolder
from dptune.stages.train import _config_difference, train_stage


def sweep_stage(
    cfgs: Sequence[TrainConfig],
    folder: str | Path,
    *,
    track: bool = True,
    tags: dict[str, str] | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train every config of `cfgs` (each `out` a subfolder of `folder`); their summaries."""
    folder = Path(folder)
    outs = {Path(cfg.out).resolve() for cfg in cfgs}
    for cfg in cfgs:
        if Path(cfg.out).resolve().parent != folder.resolve():
            raise DptuneError(f"sweep: {cfg.out} is not a folder of {folder}")
    if folder.is_dir():
        for child in folder.iterdir():
            if child.resolve() not in outs:  # a point no longer in the sweep
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    summaries = []
    for cfg in cfgs:
        run = RunFolder(cfg.out)
        if run.has_config() and _config_difference(run, cfg) is not None:
            shutil.rmtree(cfg.out)  # the point's config changed: this folder is the sweep's own
        # sweep prompts are analyses, not candidates for promotion: not registered
        summaries.append(train_stage(cfg, track=track, register=False, tags=tags,
                                     progress=progress))  # fmt: skip
    return summaries
