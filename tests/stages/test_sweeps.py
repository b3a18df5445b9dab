"""Sweeps: the profile key, its one-line errors, the plan's cells and their names, and the
report's sweep tables and figures (on run folders written here, not trained)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from stage_helpers import REPO_ROOT, profile

from dptune.errors import DptuneError
from dptune.stages.params import load_profile
from dptune.stages.plan import Cell, Plan, StageInputs
from dptune.stages.register import complete_tasks
from dptune.stages.report import collect, report_stage, sweep_report_stage
from helpers.run_folders import finished_run

BOTTLENECK = {"methods": ["dpt"], "values": {"bottleneck": [2, 4]}}


def _plan(**sweeps: Any) -> Plan:
    return Plan(profile(sweeps=sweeps), "test profile")


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"methods": ["dpt"], "values": {"depth": [2]}}, "values.depth: unknown sweep parameter"),
        ({"methods": ["pt"], "values": {"bottleneck": [2]}}, "applies to method dpt only, not pt"),
        ({"methods": ["dpt"], "values": {"bottleneck": []}}, "values.bottleneck: empty sweep"),
        ({"methods": ["dpt"], "points": []}, "points: empty sweep"),
        ({"methods": ["dpt"], "values": {"seed": [1]}}, "values.seed: unknown sweep parameter"),
        ({"methods": ["dpt"]}, "give values: {parameter: [...]} or points"),
        (
            {"methods": ["pt"], "points": [{"prompt_length": 6, "bottleneck": 2}]},
            "points[0].bottleneck: applies to method dpt only, not pt",
        ),
        ({"methods": ["residual"], "values": {"epochs": [2]}}, "residual is not in the grid"),
        ({"methods": ["dpt"], "values": {"shots": [16]}}, "shots 16 is not in few_shot.shots"),
        ({"methods": ["dpt"], "values": {"bottleneck": [0]}}, "bottleneck=0): bottleneck: Input"),
        ({"methods": ["dpt"], "tasks": ["rte"], "values": {"epochs": [2]}}, "rte is not in"),
    ],
)
def test_a_bad_sweep_is_one_line_naming_it(sweep, message):
    with pytest.raises(DptuneError) as err:
        _plan(mine=sweep)
    text = str(err.value)
    assert "\n" not in text and "sweeps" in text and message in text, text


def test_a_bad_sweep_exits_2_with_one_line(tmp_path: Path):
    path = tmp_path / "p.yaml"
    text = (REPO_ROOT / "profiles" / "smoke.yaml").read_text()
    path.write_text(text.replace("values: {bottleneck: [2, 3]}", "values: {bottle: [2, 3]}"))
    done = subprocess.run(
        [Path(sys.executable).parent / "dptune", "stage", "plan", "--params", path, "--out",
         tmp_path / "plan"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "sweeps.bottleneck" in lines[0] and "bottle" in lines[0]
    assert not (tmp_path / "plan").exists()


def test_points_equal_to_the_profile_reuse_the_grid_cell():
    plan = _plan(
        bottleneck=BOTTLENECK,
        short={"methods": ["dpt"], "points": [{"prompt_length": 6, "bottleneck": 2}]},
        k={"methods": ["dpt", "pt"], "values": {"shots": [8]}},
    )
    points = plan.sweep_points("bottleneck")
    assert [p.cell.name for p in points] == ["cb-dpt-s0", "cb-dpt-s0@bottleneck=4"]
    assert points[0].cell in plan.grid()  # b = 2 is the profile's: trained once, by the grid
    assert [c.name for c in plan.sweep_cells("bottleneck")] == ["cb-dpt-s0@bottleneck=4"]
    # the joint point keeps only what differs from the profile
    assert [c.name for c in plan.sweep_cells("short")] == ["cb-dpt-s0@prompt_length=6"]
    assert [c.name for c in plan.cells()] == [
        "cb-dpt-s0", "cb-pt-s0", "cb-dpt-s0@bottleneck=4", "cb-dpt-s0@prompt_length=6",
        "cb-dpt-s0@shots=8", "cb-pt-s0@shots=8",
    ]  # fmt: skip
    runs = plan.sweep_runs("runs")["bottleneck"]
    assert [d.as_posix() for _, d in runs] == [
        "runs/cb-dpt-s0",
        "runs/sweeps/bottleneck/cb-dpt-s0@bottleneck=4",
    ]


def test_a_sweep_cell_config_and_its_kubeflow_item(tmp_path: Path):
    plan = _plan(k={"methods": ["dpt"], "values": {"shots": [8]}}, bottleneck=BOTTLENECK)
    (cell,) = plan.sweep_cells("bottleneck")
    inputs = StageInputs(tmp_path, None, tmp_path / "samples")
    cfg = plan.cell_config(cell, inputs, tmp_path / "o", model="m")
    assert (cfg.method_config.bottleneck, cfg.prompt_length, cfg.sample) == (4, 4, None)
    item = json.loads(json.dumps({**cell.as_item(), "seed": 0.0, "point": {"bottleneck": 4.0}}))
    assert Cell.from_item(item, "kfp") == cell  # protobuf's floats come back as integers
    (k_cell,) = plan.sweep_cells("k")
    k_cfg = plan.cell_config(k_cell, inputs, tmp_path / "o", model="m")
    assert Path(k_cfg.sample).as_posix().endswith("samples/cb/k8-s0.json")
    # a run folder's stored config finds its cell again (Kubeflow names runs this way)
    assert plan.cell_of(cfg.resolved()) == cell
    assert plan.cell_of(k_cfg.resolved()) == k_cell
    base = plan.cell_config(Cell("cb", "dpt", 0), inputs, tmp_path / "o", model="m")
    assert plan.cell_of(base.resolved()) == Cell("cb", "dpt", 0)


def test_the_plan_records_change_only_for_the_cells_a_parameter_touches(tmp_path: Path):
    before = _plan(bottleneck=BOTTLENECK)
    before.write(tmp_path / "a")
    train = dict(profile().train)
    train["dpt"] = {"bottleneck": 2, "init": "normal"}  # a dpt-only change
    Plan(profile(train=train, sweeps={"bottleneck": BOTTLENECK}), "p").write(tmp_path / "b")
    changed = sorted(
        str(path.relative_to(tmp_path / "a"))
        for path in (tmp_path / "a").rglob("*.json")
        if path.read_bytes() != (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()
    )
    assert changed == ["cells/cb-dpt-s0.json", "sweeps/bottleneck.json"]


def test_the_paper_profile_carries_every_analysis():
    params = load_profile(REPO_ROOT / "profiles" / "paper.yaml")
    sweeps = params.sweeps
    assert sweeps["bottleneck"].point_list() == [{"bottleneck": b} for b in (4, 6, 8, 10, 12, 14)]
    assert [p["bottleneck"] for p in sweeps["bottleneck_large"].point_list()] == [10, 1000, 10000]
    assert [p["prompt_length"] for p in sweeps["prompt_length"].point_list()] == [20, 100, 200]
    assert sweeps["short_prompts"].point_list() == [
        {"prompt_length": 6, "bottleneck": 2}, {"prompt_length": 10, "bottleneck": 2}
    ]  # fmt: skip
    assert [p["shots"] for p in sweeps["few_shot"].point_list()] == [8, 16, 32]
    assert "residual" in sweeps["residual_c10"].methods
    assert sweeps["residual_c10"].point_list() == [{"prompt_length": 10}]
    assert params.probe.tasks == ["cb"] and "t5-base" in params.model
    plan = Plan(params, "paper")
    # b = 10 and c = 100 are the grid's: those points reuse the grid cells
    assert not any(c.point == (("bottleneck", 10),) for c in plan.sweep_cells("bottleneck"))
    assert len(plan.sweep_cells("bottleneck")) == 5 * 8 * 3
    # the later methods' own analyses (extra, not the paper's): DePT's m/r split keeps vanilla
    # PT's budget m e + r (s + e) = 76,800 on T5-base (s = 256), ULPT's r its c r + 2 e
    split = sweeps["dept_split"].point_list()
    assert [p["prompt_length"] * 768 + p["rank"] * (256 + 768) for p in split] == [76_800] * 4
    assert {"prompt_length": 60, "rank": 30} in split  # the DePT paper's setting
    assert [100 * p["rank"] + 2 * 768 for p in sweeps["ulpt_rank"].point_list()] == [
        1_736, 3_136, 7_936
    ]  # fmt: skip
    assert len(plan.sweep_cells("ulpt_rank")) == 2 * 4 * 3  # r = 2 is the grid's own cell


def test_the_old_probe_task_reads_as_a_list():
    params = profile(probe={"task": "cb", "seed": 0, "config": {}})
    assert params.probe.tasks == ["cb"]
    with pytest.raises(DptuneError, match="probe: give tasks"):
        profile(probe={"task": "cb", "tasks": ["cb"], "seed": 0, "config": {}})


# ---- the report --------------------------------------------------------------------------
def _fake_run(folder: Path, task: str, method: str, seed: int, accuracy: float) -> Path:
    test = {"accuracy": accuracy, "f1_macro": accuracy / 2}
    return finished_run(folder, task, method, seed, test, dev={"accuracy": accuracy})


def test_a_sweep_table_and_figure(tmp_path: Path):
    params = profile(seeds=[0, 1], sweeps={"bottleneck": BOTTLENECK})
    plan = Plan(params, "p")
    runs = tmp_path / "runs"
    for _, run_dir in plan.sweep_runs(runs)["bottleneck"]:
        seed = int(run_dir.name.split("-s")[1][0])
        b4 = "bottleneck=4" in run_dir.name
        _fake_run(run_dir, "cb", "dpt", seed, 0.5 + 0.1 * seed + (0.2 if b4 else 0.0))
    result = sweep_report_stage("bottleneck", plan.sweep_runs(runs)["bottleneck"],
                                tmp_path / "sweeps", track=False)  # fmt: skip
    sweep = json.loads((tmp_path / "sweeps" / "bottleneck.json").read_text())
    assert sweep == json.loads(json.dumps(result["sweep"]))
    by_label = {row["label"]: row["score"] for row in sweep["series"]}
    assert by_label["bottleneck = 2"]["mean"] == pytest.approx(0.55)
    assert by_label["bottleneck = 4"]["min"] == pytest.approx(0.7)
    assert by_label["bottleneck = 4"]["max"] == pytest.approx(0.8)
    assert by_label["bottleneck = 4"]["n"] == 2 and by_label["bottleneck = 4"]["std"] > 0
    md = (tmp_path / "sweeps" / "bottleneck.md").read_text()
    assert "| CB | dpt | bottleneck = 4 | 75.0 ± 7.1 | 70.0 | 80.0 | 2 |" in md
    assert (tmp_path / "sweeps" / "bottleneck.png").read_bytes()[:4] == b"\x89PNG"


def test_the_report_lists_the_cells_that_did_not_finish(tmp_path: Path):
    plan = Plan(profile(), "p")
    runs = tmp_path / "runs"
    _fake_run(runs / "cb-dpt-s0", "cb", "dpt", 0, 0.6)
    (runs / "cb-pt-s0").mkdir()  # a failed cell: no metrics.json
    result = report_stage(plan.grid_runs(runs), tmp_path / "reports", track=False)
    table = json.loads((tmp_path / "reports" / "results.json").read_text())
    assert table["unfinished"] == ["cb-pt-s0"] and set(table["rows"]) == {"dpt"}
    assert table["rows"]["dpt"]["avg"]["mean"] == pytest.approx(0.6)
    assert "Not finished (1 cells without metrics.json" in result["markdown"]
    assert "cb-pt-s0" in (tmp_path / "reports" / "results.md").read_text()
    with pytest.raises(DptuneError, match="no finished runs"):
        collect([runs / "cb-pt-s0"])


def test_promotion_uses_only_the_tasks_whose_cells_all_finished(tmp_path: Path):
    plan = Plan(profile(tasks=["cb", "rte"]), "p")
    runs = tmp_path / "runs"
    for cell in plan.grid():
        if cell.name != "rte-pt-s0":  # one failed cell
            _fake_run(runs / cell.name, cell.task, cell.method, cell.seed, 0.5)
    assert complete_tasks(plan, plan.grid_runs(runs)) == ["cb"]
