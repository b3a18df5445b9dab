"""Data-parallel training under torchrun: two gloo ranks on the CPU against one process.

The 2-rank runs are real `torchrun --standalone --nproc-per-node 2` launches of `dptune train`
(tests/helpers/rank_faults.py when one rank carries a fault). The tiny models have no dropout,
so the two runs differ only by float rounding. The learning rate is kept small: AdamW
normalises each gradient entry, so at a large rate rounding-level differences in near-zero
entries grow over steps (still ~1e-4 after 8 steps at lr 0.3).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dptune.config import make_config
from dptune.errors import DptuneError
from dptune.run import train
from dptune.training import distributed as ddp
from helpers import cli

HELPER = Path(__file__).resolve().parents[1] / "helpers" / "rank_faults.py"
TIMEOUT = 240  # a hang fails the test instead of the suite


@pytest.fixture
def values(base_config: dict) -> dict:
    # 29 pairs in batches of 8: the last global batch (5) splits 3 / 2 across the ranks.
    return {**base_config, "lr": 0.01, "epochs": 1, "train_limit": 29, "eval_batch_size": 64}


def torchrun(
    args: list[str], *, fault: str = "", entry: Path | None = HELPER
) -> subprocess.CompletedProcess:
    """`dptune ARGS` as two local ranks (through the fault helper, which runs it plainly when
    `fault` is empty)."""
    target = [str(entry)] if entry else ["-m", "dptune.cli.main"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "DPTUNE_FAULT": fault}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node=2", *target, *args]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def error_lines(stderr: str) -> list[str]:
    """Each `error: ...` line, also where another rank's progress bar (ending in \\r) shares it."""
    return re.findall(r"error: [^\r\n]*", stderr)


def assert_same_run(one: Path, two: Path, atol: float = 1e-5) -> None:
    """Equal to float rounding. Summing two ranks' gradients rounds differently from one
    process's batch, and AdamW carries that through every step. One CI run on a Zen 4 CPU saw
    3.2e-6 on the tiny BERT's prompt; a rerun there, and every run elsewhere, stayed under
    1e-6. What the test is for, a wrong gradient scale or a missed all-reduce, is expected to
    move the prompt by far more (not measured)."""
    a, b = (
        load_file(str(one / "trainable.safetensors")),
        load_file(str(two / "trainable.safetensors")),
    )
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] - b[name]).abs().max().item() <= atol, name
    for split in ("val", "test"):
        path = Path("predictions") / f"{split}.jsonl"
        assert (one / path).read_text() == (two / path).read_text()
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (one, two)]
    assert metrics[0]["dev"] == metrics[1]["dev"] and metrics[0]["test"] == metrics[1]["test"]


def test_ranks_from_env_and_slices():
    env = {"WORLD_SIZE": "3", "RANK": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
    ranks = ddp.ranks_from_env(env)
    assert (ranks.world, ranks.rank, ranks.main, ranks.active) == (3, 2, False, True)
    assert ddp.ranks_from_env({}) == ddp.Ranks()
    slices = [ddp.my_slice(list(range(5)), ddp.Ranks(3, r)) for r in range(3)]
    assert slices == [[0, 1], [2, 3], [4]]
    assert ddp.my_slice([7], ddp.Ranks(2, 1)) == []
    with pytest.raises(DptuneError, match="ranks on this node need"):
        ddp.check_gpus(torch.cuda.device_count() + 1)  # one GPU per local rank


def test_indivisible_batch_is_one_line_before_any_process_starts(values, tmp_path):
    run = cli.run_dptune(
        "train", *cli.flags({**values, "batch_size": 7, "processes": 2}), cwd=tmp_path
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "error: batch_size: 7 does not divide by the 2 processes; choose a multiple of 2"
    ]
    assert not Path(values["out"]).exists()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["t5", "llama", "bert"])
def test_two_ranks_equal_one_process_and_only_rank_0_writes(
    values, tmp_path, model, tiny_llama_dir, tiny_bert_dir
):
    if model == "llama":  # the loss over the global batch's answer tokens
        values = {**values, "model": str(tiny_llama_dir), "max_target_length": 8}
    if model == "bert":  # the loss over the global batch's examples; a trained head
        values = {**values, "model": str(tiny_bert_dir)}
    one = tmp_path / "one"
    train(make_config({**values, "out": str(one)}), progress=False)

    two, writes = tmp_path / "two", tmp_path / "rank1-writes.txt"
    done = torchrun(["train", *cli.flags({**values, "out": str(two)})], fault=f"writes:{writes}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_run(one, two)
    assert len(done.stdout.strip().splitlines()) == 1  # rank 0's summary only
    recorded = writes.read_text().splitlines()
    assert str(writes) in recorded  # the audit hook saw its own report being written
    rank1 = [line for line in recorded if str(two) in line]
    assert rank1 == []  # no checkpoint, lock, export or metrics from rank 1
    assert (two / "checkpoints" / "last.json").is_file()
    saved = json.loads(next((two / "checkpoints").glob("step-*/state.json")).read_text())
    assert len(saved["rng"]["ranks"]) == 1  # rank 1's RNG state, beside rank 0's


@pytest.mark.slow
def test_processes_field_launches_two_ranks(values, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    train(make_config({**values, "out": str(one)}), progress=False)
    run = cli.run_dptune("train", *cli.flags({**values, "out": two, "processes": 2}), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout)["out"] == str(two)  # one summary line
    assert_same_run(one, two)


@pytest.mark.slow
@pytest.mark.parametrize("shard", ["none", "full"])
def test_sigterm_to_one_rank_stops_both_at_one_step_and_resume_equals_uninterrupted(
    values, tmp_path, shard
):
    one, two = tmp_path / "one", tmp_path / "two"
    train(make_config({**values, "out": str(one)}), progress=False)

    args = ["train", *cli.flags({**values, "out": str(two), "shard": shard})]
    stopped = torchrun(args, fault="sigterm:2")
    assert stopped.returncode != 0
    lines = error_lines(stopped.stderr)
    # torchrun ends the other worker once one has exited, sometimes before it has printed
    assert lines and all("interrupted by SIGTERM at step 2" in line for line in lines)
    assert [p.name for p in (two / "checkpoints").glob("step-*")] == ["step-2"]
    assert not (two / "metrics.json").exists()

    resumed = torchrun([*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(one, two)


@pytest.mark.slow
def test_non_finite_loss_on_one_rank_stops_both(values, tmp_path):
    out = tmp_path / "run"
    args = ["train", *cli.flags({**values, "out": str(out), "checkpoint_every": 1})]
    stopped = torchrun(args, fault="nan:3")
    assert stopped.returncode != 0
    lines = error_lines(stopped.stderr)
    assert lines and all("step 3: loss is nan" in line for line in lines)  # as above
    last = json.loads((out / "checkpoints" / "last.json").read_text())
    assert last["step"] == 2  # the last good step's checkpoint, none of step 3


@pytest.mark.slow
def test_a_rank_that_dies_mid_step_stops_the_other_and_resume_continues(values, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    train(make_config({**values, "out": str(one)}), progress=False)
    args = ["train", *cli.flags({**values, "out": str(two), "checkpoint_every": 1})]
    died = torchrun(args, fault="kill:3")  # (a hang would run into TIMEOUT)
    assert died.returncode != 0
    assert died.stderr.count("Traceback") <= 1  # torchrun's own report; no rank's traceback
    assert json.loads((two / "checkpoints" / "last.json").read_text())["step"] == 2

    resumed = torchrun(["train", *cli.flags({**values, "out": str(two)}), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(one, two)


def test_shard_full_on_one_process_is_one_line(values, tmp_path):
    run = cli.run_dptune("train", *cli.flags({**values, "shard": "full"}), cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "error: shard: full shards the backbone over several processes; run under torchrun "
        "or with --processes N (N > 1), or use --shard none"
    ]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["t5", "llama", "bert"])
def test_fsdp2_sharded_ranks_equal_one_process(
    values, tmp_path, model, tiny_llama_dir, tiny_bert_dir
):
    values = {
        **values,
        "model": str({"llama": tiny_llama_dir, "bert": tiny_bert_dir}.get(model, values["model"])),
        "max_target_length": 8,
    }
    one, two = tmp_path / "one", tmp_path / "two"
    train(make_config({**values, "out": str(one)}), progress=False)
    done = torchrun(["train", *cli.flags({**values, "out": str(two), "shard": "full"})])
    assert done.returncode == 0, done.stderr[-2000:]
    # found anywhere in a line: the other rank's progress bar may share it (tqdm ends with \r)
    held = re.findall(r"shard: full: .* holds ([\d,]+) of the ([\d,]+) frozen", done.stderr)
    assert len(held) == 1  # rank 0's
    local, total = (int(n.replace(",", "")) for n in held[0])
    assert local < 0.6 * total  # the frozen weights are spread over the two ranks
    assert_same_run(one, two)
