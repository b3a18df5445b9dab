import json
import sys
from pathlib import Path

import pytest

from dptune.config import make_config
from dptune.errors import DptuneError
from dptune.inference import Predictor
from dptune.run import train


@pytest.fixture(scope="module")
def cb_run(tiny_t5_dir, tmp_path_factory, superglue_dir) -> Path:
    out = tmp_path_factory.mktemp("cb-run") / "run"
    values = {
        "task": "cb",
        "model": str(tiny_t5_dir),
        "data_dir": str(superglue_dir),
        "out": str(out),
        "prompt_length": 4,
        "bottleneck": 2,
        "epochs": 1,
        "train_limit": 16,
        "max_source_length": 48,
        "device": "cpu",
    }
    train(make_config(values), progress=False)
    return out


def test_predictor_reproduces_the_run_predictions(cb_run, superglue_dir):
    predictor = Predictor.from_run(cb_run)
    val = predictor.task.read(str(superglue_dir), "val")
    labels = predictor.predict([dict(ex.data) for ex in val])
    written = [json.loads(line)["label"] for line in (cb_run / "predictions/val.jsonl").open()]
    assert labels == written


def test_predict_cli_writes_an_official_file(cb_run, tmp_path, monkeypatch, capsys):
    from dptune.cli.main import main
    from dptune.tasks.registry import get_task
    from dptune.tasks.submission import read_predictions

    out = tmp_path / "val.jsonl"
    monkeypatch.setattr(sys, "argv", ["dptune", "predict", "--run", str(cb_run), "--out", str(out)])
    main()
    assert "wrote 56 predictions" in capsys.readouterr().out
    assert len(read_predictions(get_task("cb"), out)) == 56


def test_predictor_rejects_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(DptuneError, match=r"config\.yaml: missing; not a dptune run folder"):
        Predictor.from_run(tmp_path)
