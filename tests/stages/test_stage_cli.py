"""`dptune stage ...` as the command line dvc.yaml runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from stage_helpers import REPO_ROOT, profile

from helpers.cli import run_dptune


def _dptune(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return run_dptune("stage", *args, cwd=cwd)


def _write_profile(path: Path, **overrides) -> Path:
    path.write_text(yaml.safe_dump(profile(**overrides).model_dump(mode="json")))
    return path


def test_tasks_lists_the_data_the_profile_needs(tmp_path):
    done = _dptune("tasks", "--params", REPO_ROOT / "params.yaml", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "cb,rte"
    params = _write_profile(tmp_path / "p.yaml", tasks=["rte", "wic"])  # probe task: cb
    assert _dptune("tasks", "--params", params, cwd=tmp_path).stdout.strip() == "rte,wic,cb"


def test_prepare_and_sample_read_the_profile(tmp_path, superglue_dir):
    params = _write_profile(
        tmp_path / "params.yaml",
        task_overrides={"cb": {"format": "paper"}},
        probe={"task": "cb", "seed": 3, "config": {}},  # the probe's seed gets samples too
    )
    done = _dptune("prepare", "--data-dir", superglue_dir, "--stats", "stats.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "stats.json").read_text())["cb"]["format"] == "paper"
    assert not (tmp_path / "prepared").exists()  # a validation stage: no unused datasets
    done = _dptune("sample", "--params", params, "--data-dir", superglue_dir, "--out", "samples",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"out": "samples", "samples": 2}
    assert (tmp_path / "samples" / "cb" / "k8-s3.json").is_file()


def test_errors_are_one_line_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**profile().model_dump(mode="json"), "tasks": ["mnli"]}))
    done = _dptune("tasks", "--params", bad, cwd=tmp_path)
    assert done.returncode == 2
    valid = "boolq, cb, copa, multirc, record, rte, wic, wsc"
    assert done.stderr.splitlines() == [f"error: {bad}: tasks: unknown task 'mnli'; valid: {valid}"]
    params = _write_profile(tmp_path / "p.yaml")  # mlflow.track: false
    done = _dptune("register", "--params", params, "--task", "cb", cwd=tmp_path)
    assert done.returncode == 2 and "register_prompts is off; nothing to promote" in done.stderr
    done = _dptune("train", "--params", params, "--task", "cb", "--method", "dpt", "--seed", "0",
                   "--out", "run", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert "tiny:t5 is built by `dptune stage backbone`" in done.stderr


def test_the_register_stage_of_an_untracked_profile_records_a_skip(tmp_path):
    params = _write_profile(tmp_path / "p.yaml")  # mlflow.track: false
    done = _dptune("register", "--params", params, "--out", "promotions.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "skipped" in json.loads((tmp_path / "promotions.json").read_text())
