import json

import pytest

from dptune.errors import DptuneError
from dptune.figures import (
    dev_metric_keys,
    has_probe_stats,
    plot_rank_probe,
    plot_training_curves,
    read_history,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history(probe: bool) -> list[dict]:
    rows = []
    for step in range(1, 7):
        row = {"step": step, "epoch": step // 3, "train_loss": 1 / step, "lr": 0.1}
        if probe:
            row |= {"sigma_pos": 10 - step, "sigma_neg": step, "rank": 10 - step}
        rows.append(row)
        if step % 3 == 0:
            rows.append({"step": step, "epoch": step // 3, "dev_accuracy": 0.5, "dev_f1": 0.4})
    return rows


def test_training_curves_and_probe_figure_are_pngs(tmp_path):
    history = _history(probe=True)
    assert dev_metric_keys(history) == ["dev_accuracy", "dev_f1"]
    curves = plot_training_curves(history, tmp_path / "out" / "curves.png", title="cb dpt")
    probe = plot_rank_probe(history, tmp_path / "probe.png")
    for path in (curves, probe):
        assert path.read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["curves.png"]


def test_curves_without_dev_rows_and_probe_needs_its_stats(tmp_path):
    history = [{"step": 1, "train_loss": 2.0}, {"step": 2, "train_loss": float("nan")}]
    plot_training_curves(history, tmp_path / "curves.png")
    assert not has_probe_stats(history)
    with pytest.raises(DptuneError, match="no rank-probe statistics"):
        plot_rank_probe(history, tmp_path / "probe.png")
    assert not (tmp_path / "probe.png").exists()


def test_read_history_reports_the_bad_line(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps({"step": 1, "train_loss": 1.0}) + "\n\n{oops\n")
    with pytest.raises(DptuneError, match=r"history\.jsonl:3: invalid JSON"):
        read_history(path)
    path.write_text('{"train_loss": 1.0}\n')
    with pytest.raises(DptuneError, match=r":1: expected an object with an integer 'step'"):
        read_history(path)
    path.write_text('{"step": 1}\n\n{"step": 2}\n')
    assert [row["step"] for row in read_history(path)] == [1, 2]


def test_sweep_figures_numeric_and_joint_points(tmp_path):
    from dptune.figures import plot_sweep

    def row(values, mean, method="dpt"):
        score = {"mean": mean, "std": 0.01, "min": mean - 0.02, "max": mean + 0.02, "n": 3}
        label = ", ".join(f"{k} = {v}" for k, v in values.items())
        return {"task": "cb", "method": method, "values": values, "label": label,
                "metric": "accuracy", "score": score}  # fmt: skip

    wide = {"sweep": "b", "parameters": ["bottleneck"],
            "series": [row({"bottleneck": b}, 0.6) for b in (10, 1000, 10000)]}  # fmt: skip
    points = [row({"prompt_length": c, "bottleneck": 2}, 0.5) for c in (6, 10)]
    joint = {"sweep": "short", "parameters": ["prompt_length", "bottleneck"], "series": points}
    for sweep in (wide, joint):
        assert plot_sweep(sweep, tmp_path / f"{sweep['sweep']}.png").read_bytes()[:8] == PNG_MAGIC
    unfinished = {"sweep": "x", "parameters": ["bottleneck"],
                  "series": [{**row({"bottleneck": 4}, 0.5), "score": None}]}  # fmt: skip
    with pytest.raises(DptuneError, match="sweep x: no finished run"):
        plot_sweep(unfinished, tmp_path / "x.png")
