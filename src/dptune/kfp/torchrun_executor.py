"""The KFP executor of a component run by torchrun, one process per GPU of the pod:

    torchrun --standalone --nnodes 1 --nproc-per-node N -m dptune.kfp.torchrun_executor \\
        --executor_input {{$}} --function_to_execute train

Every rank runs the component's function (training is a collective: each rank takes its slice
of every batch), but only rank 0 may publish what KFP reads afterwards: the output artifacts'
folders and metadata and the executor output file. The other ranks get the same inputs with
their outputs redirected to a scratch folder of their own, which nobody reads. The run folder
itself lives on the run's workspace, the same path for every rank (`PipelineOptions` refuses
several processes without a workspace), and the training code lets rank 0 alone write it.

The component is looked up in `dptune.kfp.components`, installed in the image, instead of the
source KFP ships inline, so the command can start with torchrun.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dptune.errors import whole_lines_on_stderr

MODULE = "dptune.kfp.torchrun_executor"


def torchrun_command(nproc: int) -> list[str]:
    """The train container's command for `nproc` processes on this pod (`--standalone`: the
    rendezvous is local, no other node joins)."""
    return [
        "torchrun", "--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc),
        "-m", MODULE,
    ]  # fmt: skip


def rank_of(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """This process's global rank as torchrun sets it (0 outside torchrun)."""
    return int(environ.get("RANK", "0") or 0)


def for_rank(executor_input: dict[str, Any], rank: int, scratch: Path) -> dict[str, Any]:
    """`executor_input` as rank `rank` runs it: unchanged for rank 0; for another rank every
    output (artifact folders, parameter files, the executor output file) under `scratch`."""
    if rank == 0:
        return executor_input
    redirected = copy.deepcopy(executor_input)
    outputs = redirected.setdefault("outputs", {})
    outputs["outputFile"] = str(scratch / "executor_output.json")
    for name, parameter in outputs.get("parameters", {}).items():
        parameter["outputFile"] = str(scratch / "parameters" / name)
    for name, entry in outputs.get("artifacts", {}).items():
        for index, item in enumerate(entry.get("artifacts", [])):
            item["uri"] = str(scratch / "artifacts" / name / str(index))
            item.get("metadata", {}).pop("_kfp_workspace", None)
    return redirected


def main(argv: Sequence[str] | None = None) -> None:
    from kfp.dsl import executor

    from dptune.kfp import components

    parser = argparse.ArgumentParser(
        description="KFP executor of a dptune component under torchrun"
    )
    parser.add_argument("--executor_input", required=True)
    parser.add_argument(
        "--function_to_execute", required=True, choices=sorted(components.COMPONENTS)
    )
    args, _ = parser.parse_known_args(argv)
    whole_lines_on_stderr()  # the ranks share the pod's stderr
    rank = rank_of()
    with tempfile.TemporaryDirectory(prefix=f"dptune-rank{rank}-") as scratch:
        executor_input = for_rank(json.loads(args.executor_input), rank, Path(scratch))
        function = components.COMPONENTS[args.function_to_execute]
        written = executor.Executor(executor_input, function_to_execute=function).execute()
        print(f"dptune: rank {rank}: executor output {written}", file=sys.stderr)


if __name__ == "__main__":
    main()
