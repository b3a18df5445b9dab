"""Running the whole pipeline on this machine with kfp.local: each task a subprocess of this
Python environment, no cluster, no image.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dptune.errors import DptuneError
from dptune.kfp.connection import one_line
from dptune.kfp.options import LOCAL_OPTIONS, PipelineOptions
from dptune.kfp.pipeline import build_pipeline


def run_local(
    params: Mapping[str, Any],
    data_source: str | Path,
    pipeline_root: str | Path,
    options: PipelineOptions = LOCAL_OPTIONS,
) -> Path:
    """Run the whole pipeline here with kfp.local (each task a subprocess in this Python
    environment); return the folder of the run's outputs."""
    from kfp import local

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    _initialise_tracking()
    pipeline = build_pipeline(params, str(Path(data_source).resolve()), options)
    try:
        with warnings.catch_warnings():
            # kfp.local notes that it ignores resource requests and runs the image's code here
            warnings.filterwarnings("ignore", message=".*(have no effect|non-Python base image)")
            pipeline()
    except RuntimeError as err:  # kfp.local: "Pipeline ... finished with status FAILURE ..."
        message = one_line(err)
        raise DptuneError(f"local run: {message} (the task's error is in the log above)") from None
    created = sorted(p for p in set(root.iterdir()) - before if p.is_dir())
    if not created:
        raise DptuneError(f"pipeline root {root}: the local run wrote nothing")
    return created[-1]


def _initialise_tracking() -> None:
    """Create the MLflow store's tables before parallel tasks race to create them."""
    from dptune import tracking

    tracking.initialise_store()
