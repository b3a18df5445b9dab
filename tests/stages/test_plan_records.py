"""The plan stage's records are what the training stages train from: the one merge of a profile
flows forward, and a record DVC hashed is the config that trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stage_helpers import profile

from dptune.errors import DptuneError
from dptune.stages.plan import Cell, Plan, PlanRecords, StageInputs

INPUTS = StageInputs(Path("data"), None, Path("samples"))


def _plan() -> Plan:
    sweeps = {"rank": {"methods": ["dpt"], "values": {"bottleneck": [2, 5]}}}
    params = profile(
        model="some/model",
        methods=["dpt", "pt", "residual"], seeds=[0, 1], sweeps=sweeps,
        task_overrides={"cb": {"epochs": 3, "dpt": {"init": "normal"}}},
        probe={"tasks": ["cb"], "seed": 0, "config": {"epochs": 2, "pt_init": "random"}},
    )  # fmt: skip
    return Plan(params, "test profile")


def test_every_stage_gets_the_same_config_from_the_records_as_from_the_profile(tmp_path):
    plan = _plan()
    plan.write(tmp_path / "plan")
    records = PlanRecords(tmp_path / "plan")
    for cell in plan.grid():
        out = tmp_path / "runs" / cell.name
        expected = plan.cell_config(cell, INPUTS, out, model="m")
        assert plan.cell_config(cell, INPUTS, out, model="m", records=records) == expected
    assert records.probe_cells() == plan.probe_cells()
    for cell in plan.probe_cells():
        expected = plan.probe_config(cell, INPUTS, tmp_path / "p")
        assert plan.probe_config(cell, INPUTS, tmp_path / "p", records) == expected
        assert expected.method_config.pt_init == "random" and expected.epochs == 2  # probe.config
    from_records = plan.sweep_configs("rank", INPUTS, tmp_path / "runs", records=records)
    assert from_records == plan.sweep_configs("rank", INPUTS, tmp_path / "runs")
    assert [c.method_config.bottleneck for c in from_records] == [5, 5]  # 2: the grid's own
    assert plan.baseline_configs(INPUTS, tmp_path, records) == plan.baseline_configs(
        INPUTS, tmp_path
    )


def test_what_trains_is_the_record_not_a_second_merge_of_the_profile(tmp_path):
    plan = _plan()
    plan.write(tmp_path / "plan")
    path = tmp_path / "plan" / "cells" / "cb-dpt-s0.json"
    record = json.loads(path.read_text())
    assert record["fields"]["epochs"] == 3 and record["fields"]["init"] == "normal"
    record["fields"]["epochs"] = 7  # as if the profile had said so when the plan was written
    path.write_text(json.dumps(record))
    cell = Cell("cb", "dpt", 0)
    cfg = plan.cell_config(cell, INPUTS, "o", model="m", records=PlanRecords(tmp_path / "plan"))
    assert cfg.epochs == 7 and cfg.method_config.init == "normal"


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda r: {**r, "method": "pt"}, "holds the record of cb-pt-s0, not cb-dpt-s0"),
        (lambda r: {**r, "fields": [1]}, "fields: expected a mapping"),
        (lambda r: {**r, "fields": {"bottleneck": 0}}, "bottleneck: Input should be greater"),
        (lambda r: [r], "expected a JSON object"),
    ],
)
def test_a_bad_record_is_one_line_naming_the_file(tmp_path, edit, needle):
    plan = _plan()
    plan.write(tmp_path / "plan")
    path = tmp_path / "plan" / "cells" / "cb-dpt-s0.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    with pytest.raises(DptuneError) as info:
        plan.cell_config(Cell("cb", "dpt", 0), INPUTS, "o", model="m",
                         records=PlanRecords(tmp_path / "plan"))  # fmt: skip
    message = str(info.value)
    assert str(path) in message and needle in message and "\n" not in message


def test_a_missing_record_says_to_run_the_plan_stage(tmp_path):
    with pytest.raises(DptuneError, match="no such record; run `dptune stage plan`"):
        _plan().cell_config(Cell("cb", "dpt", 0), INPUTS, "o", model="m",
                            records=PlanRecords(tmp_path))  # fmt: skip
