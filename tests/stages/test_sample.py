import json

from dptune.stages.sample import sample_stage
from dptune.tasks.protocols import training_pool
from dptune.tasks.registry import get_task
from dptune.tasks.sampling import read_sample, sample_idx


def test_one_file_per_task_shots_and_seed(superglue, tmp_path):
    out = tmp_path / "samples"
    result = sample_stage(superglue, ["cb", "rte"], [8, 16], [0, 1], out)
    assert len(result["samples"]) == 8
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert files == sorted(
        f"{task}/k{k}-s{seed}.json" for task in ("cb", "rte") for k in (8, 16) for seed in (0, 1)
    )
    sample = read_sample(out / "cb" / "k16-s1.json")
    task = get_task("cb")
    pool = training_pool("cb", task.read(str(superglue), "train"))
    assert sample.idx == sample_idx(task, pool, 16, 1)
    assert set(read_sample(out / "cb" / "k8-s1.json").idx) <= set(sample.idx)  # samples nest
    assert json.loads((out / "rte" / "k8-s0.json").read_text())["task"] == "rte"


def test_no_shots_still_makes_the_task_folders(superglue, tmp_path):
    sample_stage(superglue, ["cb"], [], [0], tmp_path / "samples")
    assert (tmp_path / "samples" / "cb").is_dir()
