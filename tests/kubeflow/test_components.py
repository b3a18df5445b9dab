"""Each component's own function (`.python_func`), called as the KFP executor calls it: with
artifacts at local paths, on real CB data and a tiny T5, recording into a throwaway MLflow."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp.dsl import HTML, Dataset, Markdown, Metrics, Model
from kfp_helpers import artifact
from mlflow import MlflowClient

from dptune.errors import DptuneError
from dptune.kfp import components
from helpers.mlflow_store import new_store


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[MlflowClient]:
    folder = new_store(pytestconfig, tmp_path_factory.mktemp("mlflow"))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        patch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        yield MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def values(smoke: dict[str, Any], tiny_t5_dir: Path) -> dict[str, Any]:
    """The smoke profile on the session's tiny T5 (a local folder: nothing to build)."""
    train = {**smoke["train"], "train_limit": 16, "max_source_length": 48}
    probe = {**smoke["probe"], "config": {"epochs": 1}}
    return {**smoke, "model": str(tiny_t5_dir), "train": train, "probe": probe}


@pytest.fixture(scope="module")
def params(values: dict[str, Any]) -> str:
    return json.dumps(values)


@pytest.fixture(scope="module")
def inputs(
    params: str, tmp_path_factory: pytest.TempPathFactory, superglue_dir: Path
) -> dict[str, Any]:
    """superglue, stats, backbone and samples artifacts, as prepare, backbone and sample leave
    them."""
    folder = tmp_path_factory.mktemp("inputs")
    made = {
        "superglue": artifact(Dataset, folder, "superglue"),
        "stats": artifact(Metrics, folder, "stats"),
        "backbone": artifact(Model, folder, "backbone"),
        "samples": artifact(Dataset, folder, "samples"),
    }
    components.prepare.python_func(
        params=params, data_source=str(superglue_dir), superglue=made["superglue"],
        stats=made["stats"],
    )  # fmt: skip
    components.backbone.python_func(
        params=params, superglue=made["superglue"], backbone=made["backbone"]
    )
    components.sample.python_func(
        params=params, superglue=made["superglue"], samples=made["samples"]
    )
    return made


def as_protobuf(value: Any) -> Any:
    """`value` as a ParallelFor item comes back through protobuf: every number a float."""
    if isinstance(value, dict):
        return {k: as_protobuf(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_protobuf(v) for v in value]
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def grid_item(params: str, name: str) -> dict[str, Any]:
    """The grid step's item for cell `name`, as the train step receives it."""
    (item,) = [c for c in components.grid.python_func(params=params) if c["name"] == name]
    return as_protobuf(item)


def train_cell(
    params: str, inputs: dict[str, Any], folder: Path, method: str, workspace: str
) -> tuple[Model, Metrics]:
    run, metrics = artifact(Model, folder, "run"), artifact(Metrics, folder, "metrics")
    cell = grid_item(params, f"cb-{method}-s0")
    components.train.python_func(
        params=params, cell=cell, superglue=inputs["superglue"], backbone=inputs["backbone"],
        samples=inputs["samples"], workspace=workspace, pipeline_run="run-123", run=run,
        metrics=metrics,
    )  # fmt: skip
    return run, metrics


@pytest.fixture(scope="module")
def trained(
    store: MlflowClient,
    params: str,
    inputs: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """cb-dpt-s0 trained on a workspace, cb-pt-s0 in its artifact (no workspace)."""
    workspace = tmp_path_factory.mktemp("workspace")
    dpt = train_cell(params, inputs, tmp_path_factory.mktemp("dpt"), "dpt", str(workspace))
    pt = train_cell(params, inputs, tmp_path_factory.mktemp("pt"), "pt", "")
    return {"dpt": dpt, "pt": pt, "workspace": workspace}


def test_grid_lists_the_cells_of_the_profile(params):
    cells = components.grid.python_func(params=params)
    assert all(isinstance(cell, dict) for cell in cells)  # STRUCT items, as train's cell
    # each item carries the cell's record (what dvc.yaml's plan stage writes) as JSON text:
    # train trains it as is, and neither protobuf nor kfp.local can change it on the way
    records = [json.loads(cell.pop("record")) for cell in cells]
    assert [r["fields"]["bottleneck"] for r in records if r["method"] == "dpt"] == [2, 3]
    assert all(r["train_on"] is None for r in records)
    assert cells == [
        {"task": "cb", "method": "dpt", "seed": 0, "name": "cb-dpt-s0", "point": {}},
        {"task": "cb", "method": "pt", "seed": 0, "name": "cb-pt-s0", "point": {}},
        # the smoke profile's bottleneck sweep: its b = 3 point (b = 2 is the grid's dpt cell)
        {"task": "cb", "method": "dpt", "seed": 0, "name": "cb-dpt-s0@bottleneck=3",
         "point": {"bottleneck": 3}},
    ]  # fmt: skip


def test_a_bad_profile_fails_in_one_line_naming_the_field(values):
    with pytest.raises(DptuneError, match=r"^pipeline parameter params: seeds.*"):
        components.grid.python_func(params=json.dumps({**values, "seeds": "zero"}))
    with pytest.raises(DptuneError, match="pipeline parameter params: invalid JSON"):
        components.grid.python_func(params="{tasks: [cb]")


def test_prepare_copies_checked_data_and_records_its_validation(inputs):
    superglue = Path(inputs["superglue"].path)
    assert sorted(p.name for p in (superglue / "CB").iterdir()) == [
        "test.jsonl", "train.jsonl", "val.jsonl",
    ]  # fmt: skip
    assert (superglue / "MANIFEST.sha256").is_file()
    assert len(inputs["superglue"].metadata["manifest_sha256"]) == 64
    stats = inputs["superglue"].metadata["stats"]
    assert stats["cb"]["train"]["examples"] == 250 and stats["cb"]["format"] == "natural"
    assert inputs["stats"].metadata["cb_val_examples"] == 56.0


def test_prepare_names_a_missing_file(values, tmp_path, superglue_dir):
    params = json.dumps(
        {**values, "tasks": ["boolq"], "probe": {**values["probe"], "tasks": ["boolq"]}}
    )
    with pytest.raises(DptuneError, match=r"^data_source: .*BoolQ/train\.jsonl: missing"):
        components.prepare.python_func(
            params=params, data_source=str(superglue_dir),
            superglue=artifact(Dataset, tmp_path, "superglue"),
            stats=artifact(Metrics, tmp_path, "stats"),
        )  # fmt: skip


def test_backbone_and_sample_write_their_folders(inputs, tiny_t5_dir):
    folder = Path(inputs["backbone"].path)
    record = json.loads((folder / "backbone.json").read_text())
    assert record["source"] == "folder" and record["folder"] == tiny_t5_dir.name
    # materialised: later tasks load the copy in the artifact, never the source or a hub
    copied = folder / record["folder"]
    assert (copied / "config.json").read_bytes() == (tiny_t5_dir / "config.json").read_bytes()
    assert inputs["backbone"].metadata["kind"] == "seq2seq"
    assert inputs["backbone"].metadata["source"] == "folder"
    sample = json.loads((Path(inputs["samples"].path) / "cb" / "k8-s0.json").read_text())
    assert sample["shots"] == 8 and len(sample["idx"]) == 8


def test_train_publishes_the_run_without_its_checkpoint_and_records_it(trained, store):
    for method in ("dpt", "pt"):
        run, metrics = trained[method]
        folder = Path(run.path)
        assert (folder / "metrics.json").is_file() and (folder / "adapter").is_dir()
        assert not (folder / "checkpoints").exists()
        assert run.metadata["name"] == f"cb-{method}-s0" and run.metadata["seed"] == 0
        assert 0.0 <= metrics.metadata["kfp_test_accuracy"] <= 1.0
        assert metrics.metadata["kfp_trainable_params"] > 0
        mlflow_run = store.get_run(run.metadata["mlflow"]["run_id"])
        # KFP's MLflow plugin logs the Metrics artifact into the task's run: no key may be one
        # of the run's own metrics (the per-epoch dev_<m> curve above all)
        assert not set(metrics.metadata) & set(mlflow_run.data.metrics), method
        assert any(key.startswith("kfp_best_dev_") for key in metrics.metadata)
        assert mlflow_run.data.tags["kfp_run_id"] == "run-123"
        assert mlflow_run.data.tags["method"] == method
    # the dpt run trained on the workspace, which keeps its checkpoint for a retry
    assert (trained["workspace"] / "runs" / "cb-dpt-s0" / "checkpoints" / "last.json").is_file()


def test_a_retried_train_task_resumes_from_the_workspace(trained, params, inputs, tmp_path, store):
    work = trained["workspace"] / "runs" / "cb-dpt-s0"
    (work / "metrics.json").unlink()  # killed after its last checkpoint, before finishing
    first_run = trained["dpt"][0].metadata["mlflow"]["run_id"]
    run, metrics = train_cell(params, inputs, tmp_path, "dpt", str(trained["workspace"]))
    config = yaml.safe_load((Path(run.path) / "config.yaml").read_text())
    assert config["resume"] is True
    first = trained["dpt"][1].metadata["kfp_test_accuracy"]
    assert metrics.metadata["kfp_test_accuracy"] == first
    assert run.metadata["mlflow"]["run_id"] == first_run  # logged once, not twice
    runs = store.search_runs([store.get_run(first_run).info.experiment_id], "tags.method = 'dpt'")
    assert len(runs) == 1


def test_evaluate_rescores_and_publishes_the_submission_files(trained, params, inputs, tmp_path):
    run, train_metrics = trained["pt"]
    evaluation, metrics = (
        artifact(Dataset, tmp_path, "evaluation"),
        artifact(Metrics, tmp_path, "m"),
    )
    components.evaluate.python_func(
        params=params, run=run, superglue=inputs["superglue"], evaluation=evaluation,
        metrics=metrics,
    )  # fmt: skip
    records = json.loads((Path(evaluation.path) / "eval.json").read_text())
    assert list(records) == ["cb-pt-s0"] and records["cb-pt-s0"]["matches_run_metrics"]
    assert metrics.metadata["test_accuracy"] == train_metrics.metadata["kfp_test_accuracy"]
    for split, count in (("val", 56), ("test", 250)):
        lines = (Path(evaluation.path) / "predictions" / f"{split}.jsonl").read_text().splitlines()
        assert len(lines) == count and {"idx", "label"} <= set(json.loads(lines[0]))
    assert evaluation.metadata["name"] == "cb-pt-s0"


def test_probe_report_and_register(trained, params, inputs, tmp_path, store):
    out = {
        "run": artifact(Model, tmp_path, "run"),
        "probe_report": artifact(Dataset, tmp_path, "probe_report"),
        "figure": artifact(HTML, tmp_path, "figure"),
        "metrics": artifact(Metrics, tmp_path, "probe_metrics"),
    }
    components.probe.python_func(
        params=params, superglue=inputs["superglue"], backbone=inputs["backbone"],
        samples=inputs["samples"], workspace="", **out,
    )  # fmt: skip
    assert Path(out["figure"].path).read_text().count("data:image/png;base64,") == 1
    assert out["metrics"].metadata["kfp_cb_last_rank"] >= 1

    baselines = artifact(Dataset, tmp_path, "baselines")
    components.baseline.python_func(
        params=params, superglue=inputs["superglue"], backbone=inputs["backbone"],
        samples=inputs["samples"], baselines=baselines,
    )  # fmt: skip
    evaluations = []
    for method in ("dpt", "pt"):
        evaluation = artifact(Dataset, tmp_path / method, "evaluation")
        components.evaluate.python_func(
            params=params, run=trained[method][0], superglue=inputs["superglue"],
            evaluation=evaluation, metrics=artifact(Metrics, tmp_path / method, "m"),
        )  # fmt: skip
        evaluations.append(evaluation)

    table, results = artifact(Markdown, tmp_path, "table"), artifact(Dataset, tmp_path, "results")
    metrics = artifact(Metrics, tmp_path, "report_metrics")
    components.report.python_func(
        params=params, runs=[trained["dpt"][0], trained["pt"][0]], evaluations=evaluations,
        baselines=baselines, probe_report=out["probe_report"], table=table, results=results,
        metrics=metrics,
    )  # fmt: skip
    markdown = Path(table.path).read_text()
    assert "| dpt |" in markdown and "| pt |" in markdown and "| majority |" in markdown
    assert "2 of 2 runs match" in markdown and "Rank probe" in markdown
    assert sorted(p.name for p in (Path(results.path) / "curves").iterdir()) == [
        "cb-dpt-s0.csv", "cb-pt-s0.csv",
    ]  # fmt: skip
    assert set(metrics.metadata) >= {"dpt_avg", "pt_avg", "majority_avg"}

    promotions = artifact(Markdown, tmp_path, "promotions")
    components.register.python_func(
        params=params, backbone=inputs["backbone"], runs=[trained["dpt"][0], trained["pt"][0]],
        promotions=promotions,
    )  # fmt: skip
    (model,) = promotions.metadata["champions"]
    assert model.startswith("dptune-cb-")
    champion = store.get_model_version_by_alias(model, "champion")
    assert str(champion.version) == promotions.metadata["champions"][model]
    assert f"| {model} |" in Path(promotions.path).read_text()


def test_a_failed_cell_and_probe_still_yield_the_report_and_hold_back_promotion(
    trained, values, params, inputs, tmp_path, store
):
    # cb-pt-s0 trains on a few-shot sample the samples artifact lacks: its training raises
    few_shot = json.dumps({**values, "few_shot": {"shots": [8], "train_on": 8}})
    empty = artifact(Dataset, tmp_path, "no-samples")
    Path(empty.path).mkdir()
    run, metrics = artifact(Model, tmp_path, "run"), artifact(Metrics, tmp_path, "metrics")
    components.train.python_func(
        params=few_shot, cell=grid_item(few_shot, "cb-pt-s0"),
        superglue=inputs["superglue"], backbone=inputs["backbone"], samples=empty,
        workspace="", pipeline_run="run-9", run=run, metrics=metrics,
    )  # fmt: skip
    failed = json.loads((Path(run.path) / "failed.json").read_text())
    assert failed["name"] == "cb-pt-s0" and "k8-s0.json" in failed["error"]
    assert run.metadata["status"] == "failed" and metrics.metadata["kfp_failed"] == 1.0
    assert not (Path(run.path) / "metrics.json").exists()

    evaluation = artifact(Dataset, tmp_path, "evaluation")
    components.evaluate.python_func(
        params=params, run=run, superglue=inputs["superglue"], evaluation=evaluation,
        metrics=artifact(Metrics, tmp_path, "eval_metrics"),
    )  # fmt: skip
    assert json.loads((Path(evaluation.path) / "eval.json").read_text()) == {}

    # the probe's workspace is a file: its training cannot create the run folder
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    probe = {
        "run": artifact(Model, tmp_path, "probe_run"),
        "probe_report": artifact(Dataset, tmp_path, "probe_report"),
        "figure": artifact(HTML, tmp_path, "figure"),
        "metrics": artifact(Metrics, tmp_path, "probe_metrics"),
    }
    components.probe.python_func(
        params=params, superglue=inputs["superglue"], backbone=inputs["backbone"],
        samples=inputs["samples"], workspace=str(blocked), **probe,
    )  # fmt: skip
    assert "not finished" in Path(probe["figure"].path).read_text()
    assert probe["probe_report"].metadata["status"] == "failed"

    baselines = artifact(Dataset, tmp_path, "baselines")
    components.baseline.python_func(
        params=params, superglue=inputs["superglue"], backbone=inputs["backbone"],
        samples=inputs["samples"], baselines=baselines,
    )  # fmt: skip
    table, results = artifact(Markdown, tmp_path, "table"), artifact(Dataset, tmp_path, "results")
    components.report.python_func(
        params=params, runs=[trained["dpt"][0], run], evaluations=[evaluation],
        baselines=baselines, probe_report=probe["probe_report"], table=table, results=results,
        metrics=artifact(Metrics, tmp_path, "report_metrics"),
    )  # fmt: skip
    markdown = Path(table.path).read_text()
    assert "| dpt |" in markdown and "| pt |" not in markdown  # what finished
    assert "Not finished" in markdown and "cb-pt-s0" in markdown
    assert "- cb-pt-s0: " in markdown and "- probe: probe cb-probe" in markdown
    assert table.metadata["failed"] == ["cb-pt-s0", "probe"]

    # cb has an unfinished cell: its challenger and champion stay where they are
    name = json.loads((Path(trained["dpt"][0].path) / "tracking.json").read_text())
    aliases = store.get_registered_model(name["registered_model"]).aliases
    promotions = artifact(Markdown, tmp_path, "promotions")
    components.register.python_func(
        params=params, backbone=inputs["backbone"], runs=[trained["dpt"][0], run],
        promotions=promotions,
    )  # fmt: skip
    assert promotions.metadata["champions"] == {}
    assert store.get_registered_model(name["registered_model"]).aliases == aliases


def test_few_shot_train_on_trains_each_cell_on_its_sample(values, inputs, tmp_path, store):
    few_shot = json.dumps({**values, "few_shot": {"shots": [8], "train_on": 8}})
    run, _ = train_cell(few_shot, inputs, tmp_path, "dpt", "")
    config = yaml.safe_load((Path(run.path) / "config.yaml").read_text())
    assert config["sample"] == str(Path(inputs["samples"].path) / "cb" / "k8-s0.json")
    assert json.loads((Path(run.path) / "metrics.json").read_text())["train_examples"] == 8


def test_a_workspace_the_pod_cannot_write_is_one_clear_line(tmp_path, monkeypatch):
    from dptune.kfp import adapter

    locked = tmp_path / "pvc"
    locked.mkdir(mode=0o555)
    if os.access(locked, os.W_OK):  # root writes anywhere: act as uid 1000 would see it
        monkeypatch.setattr(adapter.os, "access", lambda path, mode: Path(path) != locked)
    run = artifact(Model, tmp_path, "run")
    with pytest.raises(DptuneError, match=r"^workspace .*pvc: not writable by uid .*fsGroup"):
        adapter.work_dir(str(locked), "runs", "cb-dpt-s0", run)
    assert adapter.work_dir("", "runs", "cb-dpt-s0", run) == tmp_path / "run"


class InProcessTrainJobs:
    """The Kubernetes side of `train_job`, played here: `create` runs what every trainer pod
    runs (the worker on the spec file its command names), in this process, as one rank."""

    namespace = "team"

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def check_trainer(self, runtime: str) -> None:
        assert runtime == "torch-distributed"

    def workspace_claim(self, pod: str, mount: str) -> str:
        return "run-workspace"

    def create(self, body: dict[str, Any]) -> None:
        from dptune.kfp import trainjob_worker

        self.bodies.append(body)
        command = body["spec"]["trainer"]["command"]
        assert command[:3] == ["torchrun", "-m", "dptune.kfp.trainjob_worker"]
        trainjob_worker.main(command[3:])

    def wait(self, name: str, poll_s: float) -> tuple[str, str]:
        return "Complete", "jobset completed"

    def logs(self, name: str) -> dict[str, str]:
        return {f"{name}-node-0-0": "trained"}


def test_a_trainjob_cell_trains_from_its_spec_then_is_logged_like_train(
    store, params, inputs, tmp_path, monkeypatch
):
    from dptune.kfp.options import PipelineOptions
    from dptune.kfp.pipeline import trainjob_settings
    from dptune.kfp.trainjob import TrainJobs

    jobs = InProcessTrainJobs()
    monkeypatch.setattr(TrainJobs, "in_cluster", classmethod(lambda cls: jobs))
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    settings = trainjob_settings(PipelineOptions(nodes=2, gpus=0))

    def call() -> tuple[Model, Metrics]:
        run, metrics = artifact(Model, tmp_path, "run"), artifact(Metrics, tmp_path, "metrics")
        components.train_job.python_func(
            params=params, cell=grid_item(params, "cb-pt-s0"), superglue=inputs["superglue"],
            backbone=inputs["backbone"], samples=inputs["samples"], workspace=str(workspace),
            pipeline_run="run-123", settings=settings, run=run, metrics=metrics,
        )  # fmt: skip
        return run, metrics

    run, metrics = call()
    (body,) = jobs.bodies
    assert (
        body["spec"]["trainer"]["numNodes"] == 2 and body["spec"]["trainer"]["numProcPerNode"] == 1
    )
    assert run.metadata["trainjob"] == f"team/{body['metadata']['name']}"
    # the pods saw only the workspace: the inputs were copied there, the cell trained there
    spec = json.loads(Path(body["spec"]["trainer"]["command"][3]).read_text())
    assert all(Path(p).is_relative_to(workspace / "inputs") for p in spec["inputs"])
    assert Path(spec["out"]) == workspace / "runs" / "cb-pt-s0"
    # then logged and published as a train task does
    assert (Path(run.path) / "metrics.json").is_file()
    assert not (Path(run.path) / "checkpoints").exists()
    mlflow_run = store.get_run(run.metadata["mlflow"]["run_id"])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.tags["kfp_run_id"] == "run-123"
    assert any(k.startswith("kfp_test_") for k in metrics.metadata)
    call()  # a retry of the task after the TrainJob finished: no second TrainJob
    assert len(jobs.bodies) == 1
