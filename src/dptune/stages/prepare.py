"""Stage `prepare`: validate the raw SuperGLUE jsonl of the profile's tasks.

For every task and split it checks that the file parses (errors name file:line, from the task
readers), that train and val are fully labelled, that no idx repeats, and that every example
turns into text-to-text pairs in the task's format (so a format that cannot render the data
fails here, before any training). Every file's sha256 is compared with the official one; a
different file is reported in the statistics, not rejected, so local variants stay usable.

Its only output is the validation report, the data statistics (`reports/data_stats.json` in
dvc.yaml): the stages that read the raw data (`sample`, and through the samples `train`,
`baseline` and `probe`) run after it, so invalid data stop the pipeline before them. The
training code tokenises the raw files itself (with its own cache); nothing is written for it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dptune.data.fetch import expected_hashes
from dptune.errors import DptuneError
from dptune.fileio import sha256_file, write_json
from dptune.tasks.base import Example, TextPair
from dptune.tasks.common import SuperGlueTask, describe_idx
from dptune.tasks.registry import get_task

SPLITS: tuple[str, ...] = ("train", "val", "test")
LABELLED_SPLITS: tuple[str, ...] = ("train", "val")


def _check_examples(split: str, path: Path, examples: list[Example]) -> None:
    if not examples:
        raise DptuneError(f"{path}: no examples")
    seen: set[Any] = set()
    for ex in examples:
        if ex.key in seen:
            raise DptuneError(f"{path}: idx {describe_idx(ex.idx)} repeats")
        seen.add(ex.key)
        if split in LABELLED_SPLITS and ex.label is None:
            raise DptuneError(f"{path}: idx {describe_idx(ex.idx)}: {split} example has no label")


def _sources(task: SuperGlueTask, split: str, examples: Sequence[Example]) -> list[str]:
    """The model inputs of `split` in the task's format: one per training pair (train), one per
    example (val, test). Building them, and each labelled example's target, proves the format
    renders every example."""
    sources: list[str] = []
    for ex in examples:
        pairs: list[TextPair] = task.train_pairs(ex) if ex.label is not None else []
        task.candidates(ex)
        if split == "train":
            sources.extend(pair.source for pair in pairs)
        else:
            sources.append(task.source(ex))
    return sources


def label_text(label: Any) -> str:
    """A label as a readable key: strings as they are, anything else as JSON."""
    return label if isinstance(label, str) else json.dumps(label)


def _label_counts(examples: Sequence[Example]) -> dict[str, int]:
    counts = Counter(label_text(ex.label) for ex in examples if ex.label is not None)
    return dict(counts.most_common())


def _split_stats(
    examples: Sequence[Example], sources: Sequence[str], path: Path, official: str | None
) -> dict[str, Any]:
    lengths = [len(source.split()) for source in sources]
    return {
        "examples": len(examples),
        "pairs": len(sources),
        "labels": _label_counts(examples),
        "source_words_mean": round(sum(lengths) / len(lengths), 1) if lengths else 0.0,
        "source_words_max": max(lengths, default=0),
        "official_sha256": official is not None and sha256_file(path) == official,
    }


def prepare_task(data_dir: str | Path, task_name: str, fmt: str) -> dict[str, Any]:
    """Validate one task's raw files in format `fmt`; return its statistics per split."""
    task = get_task(task_name, fmt)
    hashes = expected_hashes()
    stats: dict[str, Any] = {"format": fmt}
    for split in SPLITS:
        path = Path(data_dir) / task.dirname / f"{split}.jsonl"
        if split == "test" and not path.is_file():
            continue  # unlabelled test files are optional; train and val are not
        examples = task.read(str(data_dir), split)
        _check_examples(split, path, examples)
        sources = _sources(task, split, examples)
        if not sources:
            raise DptuneError(f"{path}: no usable {split} examples in format {fmt}")
        official = hashes.get(f"{task.dirname}/{split}.jsonl")
        stats[split] = _split_stats(examples, sources, path, official)
    return stats


def prepare_stage(
    data_dir: str | Path,
    tasks: Sequence[str],
    formats: str | Mapping[str, str],
    stats_out: str | Path,
) -> dict[str, Any]:
    """Validate every task (in `formats`: one format, or one per task) and write the data
    statistics to `stats_out` (atomically, and only when every task is valid)."""
    if not Path(data_dir).is_dir():
        raise DptuneError(f"data_dir: {data_dir}: no such folder (run `dptune data fetch`)")
    by_task = {name: formats if isinstance(formats, str) else formats[name] for name in tasks}
    stats = {name: prepare_task(data_dir, name, by_task[name]) for name in tasks}
    write_json(stats_out, stats)
    return {"tasks": list(stats), "stats": str(stats_out)}
