import csv
import json
import statistics
from pathlib import Path

import pytest

from dptune.config import METHODS
from dptune.errors import DptuneError
from dptune.stages.report import collect, metric_rows, paper_metric, report_stage, to_markdown
from dptune.stages.report.table import BASELINE_ROWS, COMPARED_ROWS
from helpers.run_folders import finished_run

HOW = {"cb": "official val halved", "rte": "official val halved"}


def _run(root: Path, task: str, method: str, seed: int, test: dict, params: int, **extra) -> Path:
    splits = {"how": HOW.get(task, "h"), "optimistic": False}
    return finished_run(
        root / f"{task}-{method}-s{seed}", task, method, seed, test,
        splits=splits, trainable_params=params, prompt_params=params, **extra,
    )  # fmt: skip


@pytest.fixture
def grid(tmp_path) -> list[Path]:
    runs = []
    for seed, (cb_acc, cb_f1, rte_acc) in enumerate([(0.8, 0.6, 0.5), (0.6, 0.4, 0.7)]):
        runs.append(
            _run(tmp_path, "cb", "dpt", seed, {"accuracy": cb_acc, "f1_macro": cb_f1}, 8680)
        )
        runs.append(_run(tmp_path, "rte", "dpt", seed, {"accuracy": rte_acc}, 8680))
    runs.append(_run(tmp_path, "cb", "pt", 0, {"accuracy": 0.5, "f1_macro": 0.3}, 76800))
    return runs


BASELINES = {
    "cb": {
        "task": "cb",
        "majority": {"label": "contradiction", "test": {"accuracy": 0.5, "f1_macro": 0.2}},
        "head-only": {
            "trainable_params": 1155,
            "seeds": [
                {"seed": 0, "test": {"accuracy": 0.7, "f1_macro": 0.5}},
                {"seed": 1, "test": {"accuracy": 0.9, "f1_macro": 0.7}},
            ],
        },
    },
    "rte": {"task": "rte", "majority": {"label": "entailment", "test": {"accuracy": 0.45}}},
}


def test_paper_metric_per_task_lives_in_the_task_modules():
    assert {t: paper_metric(t) for t in ("boolq", "cb", "copa", "multirc", "record")} == {
        "boolq": "accuracy", "cb": "accuracy", "copa": "accuracy", "multirc": "f1a",
        "record": "f1",
    }  # fmt: skip
    assert {paper_metric(t) for t in ("rte", "wic", "wsc")} == {"accuracy"}


def test_cells_are_mean_and_std_over_seeds_and_avg_is_per_seed(grid):
    table = collect(grid, BASELINES)
    assert table["tasks"] == ["cb", "rte"] and table["seeds"] == [0, 1]
    assert table["paper_metrics"] == {"cb": "accuracy", "rte": "accuracy"}
    assert list(table["rows"]) == ["majority", "head-only", "dpt", "pt"]
    dpt = table["rows"]["dpt"]
    assert dpt["tasks"]["cb"]["accuracy"]["mean"] == pytest.approx(0.7)
    assert dpt["tasks"]["cb"]["accuracy"]["std"] == pytest.approx(statistics.stdev([0.8, 0.6]))
    assert dpt["tasks"]["cb"]["score"]["mean"] == pytest.approx(0.6)  # mean of acc and f1
    # the paper's Avg per seed takes CB accuracy: seed 0 (0.8 + 0.5) / 2, seed 1 (0.6 + 0.7) / 2
    assert dpt["avg"] == {"mean": pytest.approx(0.65), "std": pytest.approx(0.0), "n": 2}
    # SuperGLUE per seed takes CB's mean of acc and F1: (0.7 + 0.5) / 2, (0.5 + 0.7) / 2
    assert dpt["superglue"] == {"mean": pytest.approx(0.6), "std": pytest.approx(0.0), "n": 2}
    assert dpt["trainable_params"] == [8680]
    assert table["rows"]["pt"]["avg"] is None  # pt has no RTE run: no average
    assert table["rows"]["pt"]["superglue"] is None
    assert table["rows"]["majority"]["avg"]["mean"] == pytest.approx((0.5 + 0.45) / 2)
    assert table["rows"]["majority"]["superglue"]["mean"] == pytest.approx(
        ((0.5 + 0.2) / 2 + 0.45) / 2
    )
    assert table["rows"]["head-only"]["tasks"]["cb"]["accuracy"]["n"] == 2
    assert "rte" not in table["rows"]["head-only"]["tasks"]
    assert table["protocol"] == {"name": "heldout", "optimistic": False, "how": HOW}


def test_markdown_table_names_methods_params_and_protocol(grid):
    text = to_markdown(collect(grid, BASELINES))
    lines = text.splitlines()
    assert "| Method | #Params | CB (acc/f1) | RTE | Avg | SuperGLUE |" in lines
    assert (
        "| dpt | 8,680 | 70.0 ± 14.1 / 50.0 ± 14.1 | 60.0 ± 14.1 | 65.0 ± 0.0 | 60.0 ± 0.0 |"
        in lines
    )
    assert "| pt | 76,800 | 50.0 / 30.0 | – | – | – |" in lines
    assert "| majority | 0 | 50.0 / 20.0 | 45.0 | 47.5 | 40.0 |" in lines
    assert any(line.startswith("Protocol: `heldout`") for line in lines)
    assert "- RTE: official val halved" in lines
    # the footnote says which average is which
    assert any(
        line.startswith("Avg is the paper's (Table 1): the mean over tasks of one metric per "
                        "task (CB accuracy, RTE accuracy). SuperGLUE is the official")
        and "(CB accuracy and macro F1 averaged first)" in line
        for line in lines
    )  # fmt: skip
    assert not any("WSC scoring" in line for line in lines)  # no WSC in the table


def test_later_methods_are_extra_rows_marked_as_not_the_paper_s(grid, tmp_path):
    plain = to_markdown(collect(grid, BASELINES))
    assert "Not part of the paper" not in plain  # the paper's own table is unchanged
    cb = {"accuracy": 0.5, "f1_macro": 0.3}
    extra = [_run(tmp_path, "cb", "ulpt", 0, cb, 1736), _run(tmp_path, "cb", "dept", 0, cb, 76800)]
    lines = to_markdown(collect([*grid, *extra], BASELINES)).splitlines()
    assert "| ulpt † | 1,736 | 50.0 / 30.0 | – | – | – |" in lines
    assert "| dept † | 76,800 | 50.0 / 30.0 | – | – | – |" in lines
    assert "| dpt | 8,680 |" in "\n".join(lines)
    assert any(line.startswith("† Not part of the paper: ulpt, dept, later") for line in lines)


def test_metric_rows_are_numbers_only(grid):
    rows = metric_rows(collect(grid, BASELINES))
    assert rows["dpt"] == {
        "cb": pytest.approx(0.7), "rte": pytest.approx(0.6), "Avg": pytest.approx(0.65),
        "SuperGLUE": pytest.approx(0.6),
    }  # fmt: skip
    assert rows["pt"] == {"cb": pytest.approx(0.5)}  # no RTE: no averages
    assert rows["head-only"] == {"cb": pytest.approx(0.8)}
    for values in rows.values():
        assert all(isinstance(v, float) for v in values.values())


def test_the_paper_avg_takes_multirc_f1a_and_record_f1(tmp_path):
    runs = [
        _run(tmp_path, "multirc", "dpt", 0, {"f1a": 0.6, "em": 0.2}, 1),
        _run(tmp_path, "record", "dpt", 0, {"f1": 0.8, "em": 0.7}, 1),
    ]
    row = collect(runs)["rows"]["dpt"]
    assert row["avg"]["mean"] == pytest.approx((0.6 + 0.8) / 2)
    assert row["superglue"]["mean"] == pytest.approx((0.4 + 0.75) / 2)


@pytest.mark.parametrize(("how", "words"), [("all", "every example"), ("positives", "38 of")])
def test_the_wsc_scoring_is_named_in_the_report(tmp_path, how, words):
    run = _run(tmp_path, "wsc", "dpt", 0, {"accuracy": 0.6}, 1, task_options={"eval": how})
    table = collect([run])
    assert table["wsc_eval"] == how
    note = next(line for line in to_markdown(table).splitlines() if "WSC scoring" in line)
    assert f"`wsc_eval: {how}`" in note and words in note


def test_wsc_runs_scored_two_ways_are_refused(tmp_path):
    a = _run(tmp_path, "wsc", "dpt", 0, {"accuracy": 0.6}, 1, task_options={"eval": "all"})
    b = _run(tmp_path, "wsc", "pt", 0, {"accuracy": 0.6}, 1, task_options={"eval": "positives"})
    with pytest.raises(DptuneError, match="WSC runs mix wsc_eval"):
        collect([a, b])


def test_report_stage_writes_table_curves_and_checks(grid, tmp_path):
    baselines = tmp_path / "baselines.json"
    baselines.write_text(json.dumps(BASELINES))
    evals = tmp_path / "eval.json"
    evals.write_text(json.dumps({r.name: {"matches_run_metrics": True} for r in grid}))
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({
        "task": "cb", "prompt_length": 10,
        "first": {"step": 1, "sigma_pos": 10, "sigma_neg": 0, "rank": 10},
        "last": {"step": 9, "sigma_pos": 6, "sigma_neg": 4, "rank": 6},
    }))  # fmt: skip
    out = tmp_path / "reports"
    result = report_stage(grid, out, baselines=baselines, evals=evals, probe=probe, track=False)
    assert json.loads((out / "results.json").read_text()) == result["table"]
    # the DVC metric: one numbers-only file per row
    assert sorted(p.name for p in (out / "metrics").iterdir()) == [
        "dpt.json", "head-only.json", "majority.json", "pt.json",
    ]  # fmt: skip
    assert json.loads((out / "metrics" / "dpt.json").read_text()) == {
        "cb": pytest.approx(0.7), "rte": pytest.approx(0.6), "Avg": pytest.approx(0.65),
        "SuperGLUE": pytest.approx(0.6),
    }  # fmt: skip
    markdown = (out / "results.md").read_text()
    assert markdown == result["markdown"]
    assert "5 of 5 runs match" in markdown
    assert "10 / 0 at step 1 -> 6 / 4 at step 9; rank of P 10 -> 6" in markdown
    with (out / "curves" / "cb-dpt-s0.csv").open() as fh:
        assert list(csv.DictReader(fh)) == [
            {"step": "2", "epoch": "1", "dev_score": "0.5"},
            {"step": "4", "epoch": "2", "dev_score": "0.75"},
        ]
    with (out / "loss" / "rte-dpt-s1.csv").open() as fh:
        assert [row["train_loss"] for row in csv.DictReader(fh)] == ["2.0", "1.0"]


def test_inconsistent_grids_are_refused(tmp_path):
    first = _run(tmp_path / "a", "cb", "dpt", 0, {"accuracy": 0.5, "f1_macro": 0.5}, 1)
    again = _run(tmp_path / "b", "cb", "dpt", 0, {"accuracy": 0.6, "f1_macro": 0.5}, 1)
    with pytest.raises(DptuneError, match="two dpt runs for cb with seed 0"):
        collect([first, again])
    paper = _run(tmp_path / "c", "rte", "dpt", 0, {"accuracy": 0.5}, 1, protocol="paper")
    with pytest.raises(DptuneError, match="runs mix protocols"):
        collect([first, paper])
    with pytest.raises(DptuneError, match="no finished runs"):  # unfinished cells only
        collect([tmp_path / "missing"])
    with pytest.raises(DptuneError, match="no finished runs"):
        collect([])


def test_the_compared_rows_are_rows_the_table_can_have():
    """A renamed method or baseline would silently drop its bootstrap comparison."""
    rows = {*BASELINE_ROWS, *METHODS}
    assert {name for pair in COMPARED_ROWS for name in pair} <= rows


def test_runs_with_attention_dropout_off_are_marked_as_a_deviation(tmp_path):
    acc = {"accuracy": 0.6, "f1_macro": 0.4}
    published = _run(tmp_path, "cb", "dpt", 0, acc, 1, attention_dropout="model")
    off = _run(tmp_path, "cb", "pt", 0, acc, 1, attention_dropout="off")
    old_encoder = _run(tmp_path, "cb", "residual", 0, acc, 1, backbone="encoder")  # hard-coded
    old_t5 = _run(tmp_path, "cb", "probe", 0, acc, 1, backbone="seq2seq")
    table = collect([published, off, old_encoder, old_t5])
    marked = {name for name, row in table["rows"].items() if row["attention_dropout_off"]}
    assert marked == {"pt", "residual"}
    lines = to_markdown(table).splitlines()
    assert any(line.startswith("| pt ‡ |") for line in lines)
    assert any(line.startswith("| dpt |") for line in lines)
    assert any(line.startswith("‡ Trained with attention dropout off") for line in lines)
    assert not any(line.startswith("‡") for line in to_markdown(collect([published])).splitlines())
