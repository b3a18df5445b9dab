"""Prediction with rank or generate decoding, and scoring against the task's metrics.

`predict_examples` is the one prediction path: training (dev selection, the exported
submission files) and `dptune.inference.Predictor` (`dptune predict`, the MLflow pyfunc) call it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from dptune.backbones.base import Backbone
from dptune.config import TrainConfig
from dptune.errors import DptuneError
from dptune.prompts.registry import get_method
from dptune.tasks.base import Example, Task
from dptune.training.data import Collator, Feature, build_eval_features, eval_batches
from dptune.training.device import autocast_for


class DeadlineExceeded(DptuneError):
    """Prediction stopped between batches because its deadline passed."""


@torch.no_grad()
def predict(
    backbone: Backbone,
    task: Task,
    examples: Sequence[Example],
    features: Sequence[Feature],
    *,
    decode: str,
    batch_size: int,
    max_new_tokens: int,
    device: torch.device,
    autocast: Any,
    desc: str = "eval",
    deadline: float | None = None,
) -> dict[Any, Any]:
    """Predicted official labels keyed by `Example.key`; None marks an invalid generation.
    Past `deadline` (a `time.monotonic()` value) it stops before the next batch and raises
    DeadlineExceeded, so a timed-out request frees the process."""
    backbone.eval()
    collate = Collator(backbone.tokenizer.pad_token_id)
    predictions: dict[Any, Any] = {}
    batches = eval_batches([len(f) for f in features], batch_size)
    for done, batch_ids in enumerate(tqdm(batches, desc=desc, leave=False, disable=None)):
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineExceeded(
                f"prediction stopped at its deadline after {done} of {len(batches)} batches"
            )
        feats = [features[i] for i in batch_ids]
        batch = {k: v.to(device) for k, v in collate(feats).items()}
        with autocast():
            if decode == "rank":
                best = backbone.rank_scores(batch).argmax(dim=-1).tolist()
                texts = [
                    task.candidates(examples[f.example])[k]
                    for f, k in zip(feats, best, strict=True)
                ]
            else:
                texts = backbone.generate(batch, max_new_tokens=max_new_tokens)
        for f, text in zip(feats, texts, strict=True):
            ex = examples[f.example]
            predictions[ex.key] = task.to_label(text, ex)
    return predictions


def predict_examples(
    backbone: Backbone,
    task: Task,
    examples: Sequence[Example],
    cfg: TrainConfig,
    device: torch.device,
    features: Sequence[Feature] | None = None,
    desc: str = "eval",
    *,
    cache: bool = True,
    deadline: float | None = None,
) -> dict[Any, Any]:
    """Labels of `examples` by Example.key with `cfg`'s decoding, lengths and batch size.

    `features` (default: built from `examples`, through the token cache unless `cache` is
    False) may cover only some of them: each Feature's `example` indexes `examples`, and only
    the examples it covers are predicted. `deadline`: see `predict`.
    """
    if features is None:
        features = build_eval_features(
            task, examples, backbone, cfg.max_source_length, cfg.max_target_length, cache=cache
        )
    return predict(
        backbone,
        task,
        examples,
        features,
        decode=cfg.decode,
        batch_size=cfg.eval_batch_size,
        max_new_tokens=cfg.max_target_length,
        device=device,
        autocast=autocast_for(
            device, cfg.precision, trains_backbone=get_method(cfg.method).trains_backbone
        ),
        desc=desc,
        deadline=deadline,
    )


def score(task: Task, examples: Sequence[Example], predictions: dict[Any, Any]) -> dict[str, float]:
    """Task metrics; an invalid prediction (None) counts as wrong, as in the paper."""
    return task.score(examples, predictions)
