"""`dptune data ...`: fetch the raw SuperGLUE files and draw few-shot samples."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dptune.data.fetch import MANIFEST_NAME, OFFICIAL_BASE_URL, TASK_DIRS

app = typer.Typer(help="Fetch SuperGLUE data and draw few-shot samples.", no_args_is_help=True)

# Help texts are built from one-line paragraphs: the help renderer keeps a docstring's breaks.
FETCH_HELP = (
    "Fetch the official SuperGLUE v2 jsonl files, each checked against its committed sha256."
    "\n\n"
    "Files are placed atomically and only if their hash is right; OUT/MANIFEST.sha256 lists "
    "every verified file in OUT (sha256sum format), for data.dvc to track. Files already in "
    "OUT with the right hash are kept. Each missing or bad file is reported as one line on "
    "stderr, and the rest is still fetched."
    "\n\n"
    "Exit codes: 0 if every requested file is in place; 2 if any requested file is missing or "
    "failed its hash check (the others are still fetched), or on bad arguments (unknown task)."
)
SAMPLE_HELP = (
    "Draw K distinct training idx for (task, K, seed), without label balancing."
    "\n\n"
    "The draw comes from the training examples no protocol evaluates on (ReCoRD: all but its "
    "heldout dev), so one sample serves both protocols and every method; it is identical on "
    "any machine. Writes {task, shots, seed, idx} as JSON, atomically."
    "\n\n"
    "Exit codes: 0 on success; 2 on bad input (unknown task, K larger than the training set, "
    "missing data), with no file written."
)


@app.command("fetch", help=FETCH_HELP)
def fetch_command(
    out: Annotated[Path, typer.Option(help="Folder to fetch into (<Task>/<split>.jsonl)")],
    source: Annotated[
        str,
        typer.Option(
            help="Base URL of the per-task <Task>.zip archives (any urllib scheme, file:// "
            "included) or a local folder of <Task>/{train,val,test}.jsonl"
        ),
    ] = OFFICIAL_BASE_URL,
    tasks: Annotated[
        str, typer.Option(help="Comma-separated tasks; default all: " + ",".join(TASK_DIRS))
    ] = ",".join(TASK_DIRS),
) -> None:
    from dptune.data.fetch import fetch, parse_tasks

    report = fetch(source, out, parse_tasks(tasks))
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in report.problems:
        print(f"error: {line}", file=sys.stderr)
    print(f"{len(report.fetched)} files in {out}; {out / MANIFEST_NAME} written")
    if not report.ok:
        sys.exit(2)  # not typer.Exit: main() runs click with standalone_mode=False


@app.command("sample", help=SAMPLE_HELP)
def sample_command(
    task: Annotated[str, typer.Option(help="Task name, e.g. cb")],
    shots: Annotated[int, typer.Option(help="K: training examples in the sample")],
    data_dir: Annotated[Path, typer.Option(help="Folder with <Task>/train.jsonl")],
    out: Annotated[Path, typer.Option(help="Sample file to write (JSON)")],
    seed: Annotated[int, typer.Option(help="Sampling seed")] = 0,
) -> None:
    from dptune.tasks.protocols import training_pool
    from dptune.tasks.registry import get_task
    from dptune.tasks.sampling import sample_idx, write_sample

    task_obj = get_task(task)
    pool = training_pool(task_obj.name, task_obj.read(str(data_dir), "train"))
    idx = sample_idx(task_obj, pool, shots, seed)
    write_sample(out, task_obj.name, shots, seed, idx)
    print(f"{out}: {shots} {task_obj.name} training idx (seed {seed})")
