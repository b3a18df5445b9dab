"""Run folders written before `method_config` (the method's fields stored flat in config.yaml)
still load, predict as they did, and count as the same run for the stages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dptune.inference import Predictor
from dptune.run_folder import RunFolder
from dptune.stages.train import _config_difference

OLD_RUNS = Path(__file__).parent / "fixtures" / "runs_before_method_config"


@pytest.mark.parametrize(
    ("name", "own"),
    [
        ("cb-dpt-s0", {"bottleneck": 2, "init": "uniform", "init_std": 0.5}),
        ("cb-residual-s0", {"residual_hidden": 8, "pt_init": "vocab"}),
    ],
)
def test_an_old_run_folder_loads_and_predicts_as_it_did(
    name: str, own: dict, tiny_t5_dir: Path, superglue_dir: Path, tmp_path: Path
) -> None:
    run = shutil.copytree(OLD_RUNS / name, tmp_path / name)
    assert "method_config" not in RunFolder(run).read_config()  # the old, flat layout
    predictor = Predictor.from_run(run, model=str(tiny_t5_dir))
    assert predictor.cfg.method_config.model_dump() == own
    examples = predictor.task.read(str(superglue_dir), "val")
    labels = predictor.predict_examples(examples)
    lines = (run / "predictions" / "val.jsonl").read_text().splitlines()
    stored = {row["idx"]: row["label"] for row in map(json.loads, lines)}
    assert {ex.idx: labels[ex.key] for ex in examples} == stored


def test_an_old_finished_run_is_the_same_run_for_the_train_stage(tmp_path: Path) -> None:
    run = RunFolder(shutil.copytree(OLD_RUNS / "cb-dpt-s0", tmp_path / "cb-dpt-s0"))
    cfg = run.read_train_config()
    assert _config_difference(run, cfg) is None  # reused, not "a run of another config"
    other = cfg.model_copy(
        update={"method_config": cfg.method_config.model_copy(update={"bottleneck": 3})}
    )
    assert "method_config" in (_config_difference(run, other) or "")
