"""One profile through both adapters (`dptune stage ...` and the Kubeflow components) gives
every stage the same inputs: the stage functions are replaced by recorders, so this checks
only what each adapter hands them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from stage_helpers import profile
from typer.testing import CliRunner

from dptune.cli.stage import app
from dptune.kfp import adapter
from dptune.stages import baseline, prepare, probe, sample, sweep, train
from dptune.stages.backbone import backbone_stage

PATH_FIELDS = ("out",)  # where each adapter writes differs by design; nothing else may


class Artifact:
    """A KFP artifact as the executor hands it to a component: a path and metadata."""

    def __init__(self, path: Path) -> None:
        self.path, self.metadata = str(path), {}

    def log_metric(self, metric: str, value: float) -> None:
        self.metadata[metric] = value


def _config(cfg: Any) -> dict[str, Any]:
    return {k: v for k, v in cfg.model_dump().items() if k not in PATH_FIELDS}


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[dict[str, Any]]]:
    """Replace the stage functions by recorders of their arguments."""
    calls: dict[str, list[dict[str, Any]]] = {}

    def record(name: str, result: Any):
        def stage(*args: Any, **kwargs: Any) -> Any:
            calls.setdefault(name, []).append({"args": args, "kwargs": kwargs})
            return result(*args, **kwargs) if callable(result) else result

        return stage

    def fake_prepare(data_dir, tasks, formats, stats_out):
        Path(stats_out).parent.mkdir(parents=True, exist_ok=True)
        Path(stats_out).write_text(json.dumps({t: {"format": formats[t]} for t in tasks}))
        return {"tasks": list(tasks)}

    def fake_probe(cfg, report_dir, **kwargs):
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        (Path(report_dir) / f"{cfg.task}.png").write_bytes(b"png")
        return {"last": {"rank": 1}}

    summary = {"test": {"accuracy": 0.5}, "dev": {"accuracy": 0.5}, "trainable_params": 1}
    monkeypatch.setattr(prepare, "prepare_stage", record("prepare", fake_prepare))
    monkeypatch.setattr(sample, "sample_stage", record("sample", {"samples": [], "out": "s"}))
    monkeypatch.setattr(train, "train_stage", record("train", summary))
    monkeypatch.setattr(baseline, "baseline_stage", record("baseline", {}))
    monkeypatch.setattr(probe, "probe_stage", record("probe", fake_probe))
    monkeypatch.setattr(sweep, "sweep_stage", record("sweep", lambda cfgs, *a, **k: []))
    return calls


@pytest.fixture
def setting(tmp_path: Path, tiny_t5_dir: Path, superglue: Path) -> dict[str, Any]:
    """A profile whose probe seed is not a grid seed and which trains on few-shot samples
    (the case where the two adapters once drew different samples)."""
    values = profile(
        model=str(tiny_t5_dir),
        tasks=["cb"],
        seeds=[0, 1],
        few_shot={"shots": [8], "train_on": 8},
        probe={"task": "rte", "seed": 5, "config": {"epochs": 2}},
        task_overrides={"rte": {"format": "paper"}},
        mlflow={
            "track": False,
            "register_prompts": True,
            "auto_promote": False,
            "promotion_margin": 0.04,
        },
        sweeps={"bottleneck": {"methods": ["dpt"], "values": {"bottleneck": [2, 3]}}},
    ).model_dump(mode="json")
    values["mlflow"]["track"] = False
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(values))
    backbone_dir = tmp_path / "backbone"
    backbone_stage(values["model"], backbone_dir, superglue)
    return {
        "values": values,
        "params_file": params_file,
        "json": json.dumps(values),
        "data": superglue,
        "backbone": backbone_dir,
        "samples": tmp_path / "samples",
        "tmp": tmp_path,
    }


def _cli(setting: dict[str, Any], *args: str | Path) -> None:
    common = ["--params", setting["params_file"]]
    result = CliRunner().invoke(app, [*map(str, args), *map(str, common)])
    assert result.exit_code == 0, (result.output, result.exception)


def _run_cli(setting: dict[str, Any], cells: list[dict[str, Any]]) -> None:
    tmp, data = setting["tmp"] / "cli", setting["data"]
    inputs = [
        "--data-dir",
        data,
        "--backbone",
        setting["backbone"],
        "--samples",
        setting["samples"],
    ]
    _cli(setting, "prepare", "--data-dir", data, "--stats", tmp / "stats.json")
    _cli(setting, "sample", "--data-dir", data, "--out", tmp / "samples")
    for cell in cells:
        out = tmp / "runs" / cell["name"]
        _cli(setting, "train", "--task", cell["task"], "--method", cell["method"],
             "--seed", str(cell["seed"]), "--out", out, *inputs)  # fmt: skip
    _cli(setting, "sweep", "--name", "bottleneck", "--runs", tmp / "runs", *inputs)
    _cli(setting, "baseline", "--out", tmp / "baselines.json", *inputs)
    _cli(setting, "probe", "--out", tmp / "probe", "--report", tmp / "probe-report",
         "--summary", tmp / "probe.json", *inputs)  # fmt: skip


def _run_kfp(setting: dict[str, Any]) -> list[dict[str, Any]]:
    tmp, params = setting["tmp"] / "kfp", setting["json"]
    superglue = Artifact(setting["data"])
    adapter.prepare(params, str(setting["data"]), Artifact(tmp / "superglue"), Artifact(tmp / "s"))
    adapter.sample(params, superglue, Artifact(tmp / "samples"))
    backbone, samples = Artifact(setting["backbone"]), Artifact(setting["samples"])
    cells = adapter.grid(params)
    for n, cell in enumerate(cells):
        item = {**cell, "seed": float(cell["seed"])}  # protobuf hands the seed back as a float
        adapter.train(params, item, superglue, backbone, samples, "", "run-1",
                      Artifact(tmp / f"run{n}"), Artifact(tmp / f"m{n}"))  # fmt: skip
    adapter.baseline(params, superglue, backbone, samples, Artifact(tmp / "baselines"))
    adapter.probe(params, superglue, backbone, samples, "", Artifact(tmp / "probe"),
                  Artifact(tmp / "probe-report"), Artifact(tmp / "figure.html"),
                  Artifact(tmp / "pm"))  # fmt: skip
    return cells


def _split(calls: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The calls of each stage, halved: the CLI's first, then the Kubeflow adapter's."""
    return {name: [c[: len(c) // 2], c[len(c) // 2 :]] for name, c in calls.items()}


def test_both_adapters_give_every_stage_the_same_inputs(setting, recorded):
    cells = adapter.grid(setting["json"])
    grid = ["cb-dpt-s0", "cb-dpt-s1", "cb-pt-s0", "cb-pt-s1"]
    # the sweep's own cells follow the grid; its b = 2 point is the grid's dpt cells
    swept = ["cb-dpt-s0@bottleneck=3", "cb-dpt-s1@bottleneck=3"]
    assert [c["name"] for c in cells] == grid + swept
    _run_cli(setting, [c for c in cells if not c["point"]])
    assert _run_kfp(setting) == cells
    sweep_calls = recorded.pop("sweep")
    train_calls = recorded.pop("train")  # the CLI's grid cells, then Kubeflow's every cell
    calls = _split(recorded)
    kfp_train = train_calls[len(grid) :]
    calls["train"] = [train_calls[: len(grid)], kfp_train]

    # the sweep: dvc.yaml's `dptune stage sweep` and the Kubeflow train items of its cells
    (cli_sweep,) = sweep_calls
    kfp_swept = [c for c in kfp_train if c["args"][0].method_value("bottleneck") == 3]
    assert [_config(c) for c in cli_sweep["args"][0]] == [_config(c["args"][0]) for c in kfp_swept]
    assert [c.method_config.bottleneck for c in cli_sweep["args"][0]] == [3, 3]
    assert [Path(c.out).name for c in cli_sweep["args"][0]] == swept
    assert all(c["kwargs"]["register"] is False for c in kfp_swept)  # analyses: not registered
    calls["train"][1] = [c for c in kfp_train if c not in kfp_swept]
    cells = cells[: len(grid)]

    cli, kfp = calls["prepare"]
    assert (
        cli[0]["args"][1:3]
        == kfp[0]["args"][1:3]
        == (["cb", "rte"], {"cb": "natural", "rte": "paper"})
    )

    cli, kfp = calls["sample"]
    # the probe's seed 5 is sampled too, by both: the probe trains on its 8-shot sample
    assert cli[0]["args"][1:4] == kfp[0]["args"][1:4] == (["cb", "rte"], [8], [0, 1, 5])

    cli, kfp = calls["train"]
    assert len(cli) == len(kfp) == len(cells)
    for ours, theirs, cell in zip(cli, kfp, cells, strict=True):
        cfg = ours["args"][0]
        assert (cfg.task, cfg.method, cfg.seed) == (cell["task"], cell["method"], cell["seed"])
        assert cfg.sample == str(setting["samples"] / "cb" / f"k8-s{cell['seed']}.json")
        assert _config(cfg) == _config(theirs["args"][0])
        assert ours["kwargs"]["track"] == theirs["kwargs"]["track"] is False
        assert ours["kwargs"]["register"] == theirs["kwargs"]["register"]

    cli, kfp = calls["baseline"]
    ours, theirs = cli[0]["args"], kfp[0]["args"]
    assert {t: [_config(c) for c in cs] for t, cs in ours[0].items()} == {
        t: [_config(c) for c in cs] for t, cs in theirs[0].items()
    }
    assert list(ours[0]) == ["cb"] and [c.seed for c in ours[0]["cb"]] == [0, 1]
    assert ours[2] == theirs[2] == ["majority", "head-only"]

    cli, kfp = calls["probe"]
    ours, theirs = cli[0], kfp[0]
    cfg = ours["args"][0]
    assert (cfg.task, cfg.method, cfg.seed, cfg.epochs, cfg.format) == (
        "rte",
        "probe",
        5,
        2,
        "paper",
    )
    assert cfg.sample == str(setting["samples"] / "rte" / "k8-s5.json")
    assert _config(cfg) == _config(theirs["args"][0])
    assert (
        ours["kwargs"]["title"]
        == theirs["kwargs"]["title"]
        == "Figure 3: rank probe on rte (c = 4, seed 5)"
    )
