"""What the export writes when generation goes wrong: wrong in metrics, still a valid file."""

from pathlib import Path

import pytest

from dptune.backbones.seq2seq import Seq2SeqBackbone
from dptune.run import train
from dptune.run_folder import RunFolder
from dptune.stages.evaluate import evaluate_run
from dptune.tasks.registry import get_task
from helpers.small_data import small_run_config, small_task_copy

NOT_A_LABEL = "definitely not a cb label"


@pytest.fixture
def invalid_generations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every generated text is no label of the task; counts the batches generated."""
    calls: list[int] = []

    def generate(self, batch, max_new_tokens):
        calls.append(len(batch["input_ids"]))
        return [NOT_A_LABEL] * len(batch["input_ids"])

    monkeypatch.setattr(Seq2SeqBackbone, "generate", generate)
    return calls


def test_an_invalid_generation_counts_wrong_and_the_submission_still_validates(
    tiny_t5_dir: Path, tmp_path: Path, invalid_generations: list[int]
):
    data = small_task_copy(tmp_path / "data")
    cfg = small_run_config(tiny_t5_dir, data, tmp_path / "run", decode="generate")
    metrics = train(cfg, progress=False)
    assert invalid_generations  # dev, val and test were all generated
    assert metrics["dev"]["accuracy"] == 0.0 and metrics["test"]["accuracy"] == 0.0

    folder = RunFolder(cfg.out)
    cb = get_task(cfg.task, cfg.format)
    labels = {"entailment", "contradiction", "neutral"}
    assert set(folder.read_predictions(cb, "val").values()) <= labels
    assert set(folder.read_predictions(cb, "test").values()) <= labels
    record = evaluate_run(folder.path, data)  # both files label every official example
    assert record["submission"]["predictions"] == 12
    # the file holds a valid label instead, which metrics.json does not credit
    assert record["matches_run_metrics"] == (record["test"]["accuracy"] == 0.0)
