"""What each trainer pod of a `--nodes` TrainJob runs, under torchrun (`dptune.kfp.trainjob`):

    torchrun -m dptune.kfp.trainjob_worker <workspace>/trainjobs/<name>.json

The spec file, written by the `train_job` task, holds the pipeline's `params`, the grid item,
the inputs' copies on the workspace and the run folder. The cell trains there without MLflow:
the `train_job` task logs and registers the finished folder, as `train` does.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> None:
    from dptune.errors import DptuneError
    from dptune.fileio import read_json
    from dptune.kfp.adapter import cell_config
    from dptune.stages.plan import StageInputs
    from dptune.stages.train import train_stage

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(args) != 1:
            raise DptuneError("usage: python -m dptune.kfp.trainjob_worker SPEC.json")
        spec = read_json(Path(args[0]))
        inputs = StageInputs(*(Path(p) for p in spec["inputs"]))
        cfg = cell_config(spec["params"], spec["cell"], inputs, Path(spec["out"]))
        train_stage(cfg, track=False, register=False)
    except DptuneError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
