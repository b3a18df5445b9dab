import csv
import json

import pytest
from stage_helpers import profile, tiny_config

from dptune.errors import DptuneError
from dptune.stages.probe import probe_stage, probes_stage


def test_probe_trains_and_draws_the_rank_figure(tiny_t5_dir, tmp_path, superglue_dir):
    cfg = tiny_config(profile(), tiny_t5_dir, superglue_dir, tmp_path / "run", method="probe")
    summaries = probes_stage([cfg], tmp_path / "report", tmp_path / "probe.json", track=False)
    summary = summaries["cb"]
    report = tmp_path / "report"
    assert (report / "cb.png").read_bytes()[:4] == b"\x89PNG"
    with (report / "cb.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["step", "sigma_pos", "sigma_neg", "rank"]
    assert len(rows) == summary["steps"]  # log_every 1: one row per step
    assert json.loads((tmp_path / "probe.json").read_text()) == summaries
    first = summary["first"]
    assert first["sigma_pos"] + first["sigma_neg"] <= cfg.prompt_length  # min(c, e) entries
    assert 0 < summary["last"]["rank"] <= cfg.prompt_length
    assert summary["task"] == "cb" and "accuracy" in summary["test"]


def test_probe_needs_the_probe_method(tiny_t5_dir, tmp_path, superglue_dir):
    cfg = tiny_config(profile(), tiny_t5_dir, superglue_dir, tmp_path / "run", method="dpt")
    with pytest.raises(DptuneError, match="trains method 'probe', not 'dpt'"):
        probe_stage(cfg, tmp_path / "report", track=False)
