"""Stage `prepare`: validate the raw SuperGLUE jsonl and turn it into text-to-text datasets.

For each task and split it writes a Hugging Face dataset (`save_to_disk`) with one row per
training pair (train) or per example (val, test):

    idx (JSON text), source, target ("" when unlabelled), label (JSON text), candidates

Validation: every file parses (errors name file:line, from the task readers), train and val are
fully labelled, no idx repeats, and every file's sha256 is compared with the official one
(a different file is reported in the stats, not rejected, so local variants stay usable).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dptune.data.fetch import expected_hashes, sha256_file
from dptune.errors import DptuneError
from dptune.fileio import atomic_dir, write_json
from dptune.tasks.base import Example
from dptune.tasks.common import SuperGlueTask, describe_idx
from dptune.tasks.registry import get_task

SPLITS: tuple[str, ...] = ("train", "val", "test")
LABELLED_SPLITS: tuple[str, ...] = ("train", "val")


def _check_examples(task: SuperGlueTask, split: str, path: Path, examples: list[Example]) -> None:
    if not examples:
        raise DptuneError(f"{path}: no examples")
    seen: set[Any] = set()
    for ex in examples:
        if ex.key in seen:
            raise DptuneError(f"{path}: idx {describe_idx(ex.idx)} repeats")
        seen.add(ex.key)
        if split in LABELLED_SPLITS and ex.label is None:
            raise DptuneError(f"{path}: idx {describe_idx(ex.idx)}: {split} example has no label")


def _rows(task: SuperGlueTask, split: str, examples: Sequence[Example]) -> list[dict[str, Any]]:
    rows = []
    for ex in examples:
        pairs = task.train_pairs(ex) if ex.label is not None else []
        common = {
            "idx": json.dumps(ex.idx),
            "label": json.dumps(ex.label),
            "candidates": task.candidates(ex),
        }
        if split == "train":
            rows.extend({**common, "source": p.source, "target": p.target} for p in pairs)
        else:
            target = pairs[0].target if pairs else ""
            rows.append({**common, "source": task.source(ex), "target": target})
    return rows


def label_text(label: Any) -> str:
    """A label as a readable key: strings as they are, anything else as JSON."""
    return label if isinstance(label, str) else json.dumps(label)


def _label_counts(examples: Sequence[Example]) -> dict[str, int]:
    counts = Counter(label_text(ex.label) for ex in examples if ex.label is not None)
    return dict(counts.most_common())


def _split_stats(
    examples: Sequence[Example], rows: Sequence[dict[str, Any]], path: Path, official: str | None
) -> dict[str, Any]:
    lengths = [len(r["source"].split()) for r in rows]
    return {
        "examples": len(examples),
        "rows": len(rows),
        "labels": _label_counts(examples),
        "source_words_mean": round(sum(lengths) / len(lengths), 1) if lengths else 0.0,
        "source_words_max": max(lengths, default=0),
        "official_sha256": official is not None and sha256_file(path) == official,
    }


def prepare_task(data_dir: str | Path, task_name: str, fmt: str, out: str | Path) -> dict[str, Any]:
    """Validate one task's raw files and write its text-to-text DatasetDict to `out`."""
    from datasets import Dataset, DatasetDict

    task = get_task(task_name, fmt)
    hashes = expected_hashes()
    stats: dict[str, Any] = {"format": fmt}
    datasets: dict[str, Dataset] = {}
    for split in SPLITS:
        path = Path(data_dir) / task.dirname / f"{split}.jsonl"
        if split == "test" and not path.is_file():
            continue  # unlabelled test files are optional; train and val are not
        examples = task.read(str(data_dir), split)
        _check_examples(task, split, path, examples)
        rows = _rows(task, split, examples)
        if not rows:
            raise DptuneError(f"{path}: no usable {split} rows in format {fmt}")
        datasets[split] = Dataset.from_list(rows)
        official = hashes.get(f"{task.dirname}/{split}.jsonl")
        stats[split] = _split_stats(examples, rows, path, official)
    with atomic_dir(out) as tmp:
        DatasetDict(datasets).save_to_disk(str(tmp))
    return stats


def prepare_stage(
    data_dir: str | Path,
    tasks: Sequence[str],
    fmt: str | Mapping[str, str],
    out: str | Path,
    stats_out: str | Path,
) -> dict[str, Any]:
    """Prepare every task (in `fmt`, one format or one per task) into `out/<task>/` and write
    the data statistics to `stats_out`."""
    if not Path(data_dir).is_dir():
        raise DptuneError(f"data_dir: {data_dir}: no such folder (run `dptune data fetch`)")
    formats = {name: fmt if isinstance(fmt, str) else fmt[name] for name in tasks}
    stats = {name: prepare_task(data_dir, name, formats[name], Path(out) / name) for name in tasks}
    write_json(stats_out, stats)
    return {"tasks": list(stats), "out": str(out), "stats": str(stats_out)}
