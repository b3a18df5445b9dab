"""End to end: the project's dvc.yaml with the smoke profile, in a fresh git + DVC repository.

Offline and on CPU: a tiny T5 is built by the pipeline itself, the data are the real CB files
beside the repository. Checks the DVC outputs, metrics and plots, that finished stages are not
redone, the MLflow runs, registered prompts and aliases, promotion and the pyfunc model.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from helpers.smoke_project import run as _run

pytestmark = pytest.mark.slow  # a whole `dvc repro` of the smoke profile: minutes

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def project(smoke_project):
    """A git + DVC repository holding the project's pipeline, after a complete `dvc repro`
    (built once per session: tests/helpers/smoke_project.py)."""
    return smoke_project


def test_every_stage_ran_once_and_finished_cells_were_not_redone(project):
    first, rest = project["first"], project["rest"]
    for stage in ("plan", "backbone", "prepare", "sample", "train@cb-dpt-0"):
        assert f"Running stage '{stage}'" in first
        assert f"Running stage '{stage}'" not in rest
    for stage in ("train@cb-pt-0", "sweep@bottleneck", "evaluate", "baseline", "probe",
                  "report", "sweep_report@bottleneck", "register"):  # fmt: skip
        assert f"Running stage '{stage}'" in rest
    status = _run(["dvc", "status"], project["repo"], project["env"])
    assert "up to date" in status
    again = _run(["dvc", "repro"], project["repo"], project["env"])
    assert "Running stage" not in again


def test_outputs_and_the_data_version(project):
    repo = project["repo"]
    for run in ("cb-dpt-s0", "cb-pt-s0"):
        for name in ("metrics.json", "prompt.safetensors", "predictions/test.jsonl"):
            assert (repo / "runs" / run / name).is_file()
    assert (repo / "probe" / "cb-probe-s0" / "history.jsonl").is_file()
    # prepare validates: its one output is the report, nothing unused is written
    stats = json.loads((repo / "reports" / "data_stats.json").read_text())
    assert stats["cb"]["format"] == "natural" and stats["cb"]["train"]["examples"] == 250
    assert not (repo / "data" / "prepared").exists()
    assert (repo / "data" / "samples" / "cb" / "k8-s0.json").is_file()
    table = (repo / "reports" / "results.md").read_text()
    assert "| dpt |" in table and "| pt |" in table and "| majority |" in table
    assert "| Avg | SuperGLUE |" in table and "Avg is the paper's" in table
    detail = json.loads((repo / "reports" / "results.json").read_text())  # not a metric
    assert set(detail["rows"]) == {"majority", "dpt", "pt"}
    assert detail["rows"]["dpt"]["superglue"]["n"] == 1
    assert (
        json.loads((repo / "runs" / "cb-dpt-s0" / "metrics.json").read_text())["train_pairs"] == 32
    )  # CB: one pair per example (train_limit 32)
    # dvc repro recorded the fetched data (CB only) in data.dvc
    recorded = yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]
    original = yaml.safe_load((REPO_ROOT / "data.dvc").read_text())["outs"][0]
    assert recorded["path"] == "data/superglue" and recorded["nfiles"] == 4
    assert recorded["md5"] != original["md5"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert {"train@cb-dpt-0", "train@cb-pt-0"} <= set(lock)


def test_the_bottleneck_sweep_trained_only_its_dpt_point(project):
    """The smoke sweep b in {2, 3}: b = 2 is the grid's dpt cell, so the sweep trains b = 3
    alone (no pt cell); the report draws both points."""
    repo = project["repo"]
    assert [p.name for p in (repo / "runs" / "sweeps" / "bottleneck").iterdir()] == [
        "cb-dpt-s0@bottleneck=3"
    ]
    run = repo / "runs" / "sweeps" / "bottleneck" / "cb-dpt-s0@bottleneck=3"
    assert yaml.safe_load((run / "config.yaml").read_text())["method_config"]["bottleneck"] == 3
    sweep = json.loads((repo / "reports" / "sweeps" / "bottleneck.json").read_text())
    assert [(r["method"], r["values"], r["score"]["n"]) for r in sweep["series"]] == [
        ("dpt", {"bottleneck": 2}, 1), ("dpt", {"bottleneck": 3}, 1)
    ]  # fmt: skip
    assert sweep["unfinished"] == []
    assert "| CB | dpt | bottleneck = 3 |" in (repo / "reports/sweeps/bottleneck.md").read_text()
    assert (repo / "reports/sweeps/bottleneck.png").read_bytes()[:4] == b"\x89PNG"


def test_dvc_metrics_and_plots(project):
    repo, env = project["repo"], project["env"]
    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], repo, env))
    metrics = shown[""]["data"]
    # the table: one numbers-only file per row (the paper metric per task, Avg, SuperGLUE)
    rows = {"majority", "dpt", "pt"}
    assert set(metrics) == {f"reports/metrics/{r}.json" for r in rows}  # the table alone
    for row in rows:
        values = metrics[f"reports/metrics/{row}.json"]["data"]
        assert set(values) == {"cb", "Avg", "SuperGLUE"}
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values.values())
    table = _run(["dvc", "metrics", "show"], repo, env).splitlines()
    assert max(len(line) for line in table) < 160, "\n".join(table)  # fits a terminal
    assert "last" in json.loads((repo / "reports" / "probe.json").read_text())["cb"]
    evals = json.loads((repo / "reports" / "eval.json").read_text())
    assert evals["cb-pt-s0"]["matches_run_metrics"] is True
    out = project["scratch"] / "plots"
    plots = json.loads(_run(["dvc", "plots", "show", "--json", "-o", str(out)], repo, env))
    names = sorted(plots["data"])
    # each figure once: the probe's series and image, per run its dev score and its loss, the
    # sweep's figure
    assert names == [
        "reports/curves/cb-dpt-s0.csv", "reports/curves/cb-pt-s0.csv",
        "reports/loss/cb-dpt-s0.csv", "reports/loss/cb-pt-s0.csv",
        "reports/probe/cb.csv", "reports/probe/cb.png", "reports/sweeps/bottleneck.png",
    ], names  # fmt: skip
    for name in names:
        assert len(plots["data"][name]) == 1, name
    for name, y in zip(names[:4], ["dev_score"] * 2 + ["train_loss"] * 2, strict=True):
        values = plots["data"][name][0]["content"]["data"]["values"]  # the curves hold points
        assert values and all(float(v[y]) >= 0.0 for v in values), name
    html = project["scratch"] / "html"
    _run(["dvc", "plots", "show", "-o", str(html)], repo, env)
    page = (html / "index.html").read_text()
    assert page.count("vegaEmbed(") == 5 and page.count("<img") == 2


def test_dvc_metrics_diff_against_the_last_commit(project):
    repo, env = project["repo"], project["env"]
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    _run([*git, "add", "-A"], repo, env)
    _run([*git, "commit", "-q", "-m", "smoke results"], repo, env)
    assert json.loads(_run(["dvc", "metrics", "diff", "--json"], repo, env)) == {}
    results = repo / "reports" / "metrics" / "dpt.json"
    committed = results.read_text()
    table = json.loads(committed)
    table["Avg"] += 0.25  # as if a new run scored better
    results.write_text(json.dumps(table))
    try:
        diff = json.loads(_run(["dvc", "metrics", "diff", "--json"], repo, env))
        change = diff["reports/metrics/dpt.json"]["Avg"]
        assert change["diff"] == pytest.approx(0.25)
    finally:
        results.write_text(committed)


def test_outputs_push_to_the_local_remote(project):
    _run(["dvc", "push"], project["repo"], project["env"])
    assert any(project["remote"].rglob("*"))


def test_mlflow_runs_registry_promotion_and_pyfunc(project, superglue_dir, monkeypatch):
    repo, env = project["repo"], project["env"]
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    # MLflow's set_*_uri export the URIs to the environment; monkeypatch takes them back after
    # the test, so later tests' stores are not this project's
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    experiment = client.get_experiment_by_name("dptune")
    runs = client.search_runs([experiment.experiment_id], "tags.dvc_stage = 'train'")
    swept = [r for r in runs if r.data.tags.get("sweep") == "bottleneck"]
    assert [r.data.params["bottleneck"] for r in swept] == ["3"]  # the sweep's own cell
    runs = [r for r in runs if r not in swept]
    assert sorted((r.data.tags["task"], r.data.tags["method"]) for r in runs) == [
        ("cb", "dpt"), ("cb", "pt")
    ]  # fmt: skip
    for run in runs:
        assert {"test_accuracy", "eval_test_accuracy", "train_loss"} <= set(run.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"prompt.safetensors", "config.yaml", "adapter"} <= artifacts
    probe = client.search_runs([client.get_experiment_by_name("dptune-probe").experiment_id])
    assert len(probe) == 1
    assert "figures/rank_probe.png" in {
        a.path for a in client.list_artifacts(probe[0].info.run_id, "figures")
    }
    reports = client.search_runs([client.get_experiment_by_name("dptune-report").experiment_id])
    sweep_run = next(r for r in reports if r.data.tags.get("sweep") == "bottleneck")
    assert "sweeps/bottleneck.png" in {
        a.path for a in client.list_artifacts(sweep_run.info.run_id, "sweeps")
    }
    assert any(key.startswith("cb_dpt_bottleneck") for key in sweep_run.data.metrics)

    name = "dptune-cb-tiny"
    versions = client.search_model_versions(f"name = '{name}'")
    assert len(versions) == 2
    best = max(versions, key=lambda v: (float(v.tags["dev_accuracy"]), -int(v.version)))
    # the register stage named the run's best version by dev challenger and, as the smoke
    # profile auto-promotes, made it champion
    assert str(client.get_model_version_by_alias(name, "challenger").version) == str(best.version)
    promoted = json.loads((repo / "reports" / "promotions.json").read_text())["cb"]
    assert promoted["promoted"] is True and promoted["uri"] == f"models:/{name}@champion"
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == promoted["champion"]
    assert str(best.version) == promoted["champion"] == promoted["challenger"]
    # promoting again by hand keeps the champion
    again = json.loads(_run(["dptune", "stage", "register", "--task", "cb",
                             "--backbone", "models/backbone"], repo, env))["cb"]  # fmt: skip
    assert again["promoted"] is False and again["champion"] == promoted["champion"]

    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    records = [json.loads(line) for line in (superglue_dir / "CB" / "val.jsonl").open()][:3]
    labels = model.predict(records)
    assert len(labels) == 3 and set(labels) <= {"entailment", "contradiction", "neutral"}


def test_an_experiment_reruns_only_what_its_parameter_changes(project):
    """`dvc exp run -S` (README): the probe's epochs change; the trained grid cells are reused."""
    repo, env = project["repo"], project["env"]
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    _run([*git, "add", "-A"], repo, env)
    _run([*git, "commit", "-q", "--allow-empty", "-m", "before the experiment"], repo, env)
    summary = repo / "reports" / "probe.json"  # per probed task
    steps_before = json.loads(summary.read_text())["cb"]["steps"]

    out = _run(["dvc", "exp", "run", "-S", "probe.config.epochs=1"], repo, env)
    assert "Stage 'train@cb-dpt-0' didn't change" in out
    assert "Running stage 'probe'" in out and "Running stage 'report'" in out
    assert json.loads(summary.read_text())["cb"]["steps"] == steps_before // 2
    assert yaml.safe_load((repo / "params.yaml").read_text())["probe"]["config"]["epochs"] == 1
    listed = _run(["dvc", "exp", "list", "--name-only"], repo, env).split()
    assert len(listed) == 1


def test_a_queued_experiment_logs_into_the_project_store(project):
    """`dvc exp run --queue` + `dvc queue start` run in a temporary copy of the project, which
    is deleted afterwards: their MLflow runs must land in the project's own store."""
    repo, env = project["repo"], project["env"]
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    _run([*git, "add", "-A"], repo, env)
    _run([*git, "commit", "-q", "--allow-empty", "-m", "before the queued experiment"], repo, env)
    baseline_rev = _run(["git", "rev-parse", "HEAD"], repo, env).strip()
    name = "queued-probe"  # a value never run before: no run-cache restore, the probe really runs
    _run(["dvc", "exp", "run", "--queue", "-n", name, "-S", "probe.config.epochs=3"], repo, env)
    _run(["dvc", "queue", "start"], repo, env)
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        status = _run(["dvc", "queue", "status"], repo, env)
        if not any(word in status for word in ("Queued", "Running")):
            break
        time.sleep(5)
    _run(["dvc", "queue", "stop", "--kill"], repo, env)
    assert "Success" in status, status + _run(["dvc", "queue", "logs", name], repo, env)

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}", f"sqlite:///{repo / 'mlflow.db'}")
    for experiment in ("dptune-probe", "dptune-report"):  # the stages that reran in the queue
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id], f"tags.dvc_experiment = '{name}'")
        assert len(runs) == 1, (experiment, _run(["dvc", "queue", "logs", name], repo, env))
    assert runs[0].data.tags["dvc_baseline_rev"] == baseline_rev
    artifacts = Path(runs[0].info.artifact_uri.removeprefix("file://"))
    assert artifacts.is_dir() and repo in artifacts.parents  # beside the store, not in the copy


def test_the_stages_run_the_projects_copy_of_the_source(project):
    """What makes the dependency test below real: `dptune` imports the project's src/."""
    where = _run([str(BIN / "python"), "-c", "import dptune; print(dptune.__file__)"],
                 project["repo"], project["env"])  # fmt: skip
    assert Path(where.strip()).resolve() == (project["repo"] / "src/dptune/__init__.py").resolve()


def test_a_changed_default_in_config_makes_the_train_stages_stale(project):
    """Issue 13: after `dvc repro`, editing src/dptune/config.py (where every TrainConfig default
    lives) makes `dvc status` list the train stages and the probe."""
    repo, env = project["repo"], project["env"]
    config = repo / "src" / "dptune" / "config.py"
    original = config.read_bytes()
    assert "up to date" in _run(["dvc", "status"], repo, env)
    config.write_bytes(original + b"\n# a harmless change: dvc must notice it\n")
    try:
        stale = json.loads(_run(["dvc", "status", "--json"], repo, env))
        for stage in ("train@cb-dpt-0", "train@cb-pt-0", "probe"):
            assert stage in stale, f"{stage} not stale after a config.py change: {stale}"
            assert {"changed deps": {"src/dptune/config.py": "modified"}} in stale[stage]
    finally:
        config.write_bytes(original)
    assert "up to date" in _run(["dvc", "status"], repo, env)


def test_a_dpt_only_change_makes_only_dpt_cells_stale(project):
    """A change under train.dpt rewrites only the dpt records of the plan stage, so after it
    `dvc status` lists the dpt grid cell and the dpt sweep, never a pt cell or the probe."""
    repo, env = project["repo"], project["env"]
    params = repo / "params.yaml"
    original = params.read_text()
    assert "up to date" in _run(["dvc", "status"], repo, env)
    values = yaml.safe_load(original)
    values["train"]["dpt"]["init"] = "normal"
    params.write_text(yaml.safe_dump(values, sort_keys=False))
    try:
        assert set(json.loads(_run(["dvc", "status", "--json"], repo, env))) == {"plan"}
        _run(["dvc", "repro", "plan"], repo, env)
        stale = json.loads(_run(["dvc", "status", "--json"], repo, env))
        assert set(stale) == {"train@cb-dpt-0", "sweep@bottleneck"}, stale
    finally:
        params.write_text(original)
        _run(["dvc", "repro", "plan"], repo, env)
    assert "up to date" in _run(["dvc", "status"], repo, env)


def test_few_shot_train_on_trains_a_cell_on_its_k_shot_sample(project):
    """`few_shot.train_on` through DVC: the cell retrains on its 8-shot sample (one cell only,
    to stay cheap: `dvc exp run` with the stage as target)."""
    repo, env = project["repo"], project["env"]
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    _run([*git, "add", "-A"], repo, env)
    _run([*git, "commit", "-q", "--allow-empty", "-m", "before few-shot"], repo, env)
    run = repo / "runs" / "cb-dpt-s0"
    assert json.loads((run / "metrics.json").read_text())["train_examples"] > 8  # full data

    out = _run(["dvc", "exp", "run", "-S", "few_shot.train_on=8", "train@cb-dpt-0"], repo, env)
    assert "Running stage 'train@cb-dpt-0'" in out
    assert "Running stage 'sample'" not in out  # the samples were already drawn
    assert yaml.safe_load((repo / "params.yaml").read_text())["few_shot"]["train_on"] == 8
    assert json.loads((run / "metrics.json").read_text())["train_examples"] == 8
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert Path(config["sample"]).as_posix().endswith("data/samples/cb/k8-s0.json")
