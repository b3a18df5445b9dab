"""Checkpoints without pickle: the layout, a bit-exact round trip, keeping the previous good
one, and corrupt, truncated or foreign checkpoints as one line (exit 2)."""

import contextlib
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import get_linear_schedule_with_warmup

from dptune.config import make_config
from dptune.errors import DptuneError
from dptune.run import train
from dptune.run_folder import RunFolder
from dptune.training import checkpoint as ckpt
from dptune.training.trainer import Trainer
from helpers import cli
from helpers.faults import record_fault


def _toy(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    groups = [
        {"params": list(model[0].parameters()), "lr": 0.1, "weight_decay": 0.01},
        {"params": list(model[2].parameters()), "lr": 0.05, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=0.1)
    scheduler = get_linear_schedule_with_warmup(optimizer, 2, 20)
    return model, optimizer, scheduler


def _step(model, optimizer, scheduler) -> float:
    x = torch.randn(3, 4) + random.random() + float(np.random.rand())
    loss = model(x).pow(2).mean()
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return loss.item()


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _save(run: Path, model, optimizer, scheduler, step: int, best=None) -> Path:
    state = ckpt.TrainState(step=step, batch_in_epoch=step, running_loss=0.1, running_count=1)
    state.history.append({"step": step, "train_loss": float("nan"), "lr": 1e-3})
    return ckpt.save_checkpoint(run, state, _trainable(model), best, optimizer, scheduler)


def _restore(saved, model, optimizer, scheduler) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(saved["trainable"][name])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    ckpt.set_rng_state(saved["rng"])


def test_a_checkpoint_is_safetensors_and_json_and_resumes_bit_for_bit(tmp_path):
    random.seed(1)
    np.random.seed(1)
    model, optimizer, scheduler = _toy()
    for _ in range(3):
        _step(model, optimizer, scheduler)
    best = {k: v * 2 for k, v in _trainable(model).items()}
    path = _save(tmp_path / "run", model, optimizer, scheduler, step=3, best=best)
    expected = [_step(model, optimizer, scheduler) for _ in range(4)]
    expected_weights = _trainable(model)

    assert path == tmp_path / "run" / "checkpoints" / "step-3"
    assert sorted(p.name for p in path.iterdir()) == ["state.json", "tensors.safetensors"]
    pointer = json.loads((tmp_path / "run" / "checkpoints" / "last.json").read_text())
    assert pointer == {"checkpoint": "step-3", "step": 3}
    meta = json.loads((path / "state.json").read_text())  # plain JSON, nothing to unpickle
    assert meta["format"] == "dptune-checkpoint" and meta["step"] == 3
    assert "rng/torch" in load_file(str(path / "tensors.safetensors"))

    # a different process state: other weights, optimizer moments and RNG streams
    model, optimizer, scheduler = _toy(seed=5)
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    saved = ckpt.load_checkpoint(tmp_path / "run")
    assert saved["path"] == path
    assert saved["state"].step == 3 and saved["state"].running_count == 1
    assert saved["state"].history[0]["step"] == 3
    assert all(torch.equal(saved["best_trainable"][k], best[k]) for k in best)
    assert saved["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    _restore(saved, model, optimizer, scheduler)
    assert [_step(model, optimizer, scheduler) for _ in range(4)] == expected
    for name, value in _trainable(model).items():
        assert torch.equal(value, expected_weights[name]), name


def test_the_newest_two_are_kept_and_leftovers_removed(tmp_path):
    model, optimizer, scheduler = _toy()
    run = RunFolder(tmp_path / "run")
    assert not run.has_checkpoint() and ckpt.load_checkpoint(run) is None
    for step in (1, 2, 3):
        _save(run.path, model, optimizer, scheduler, step)
    (run.checkpoints_dir / ".step-9.abc.tmp").mkdir()  # a write killed half way
    _save(run.path, model, optimizer, scheduler, 4)
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == [
        "last.json", "step-3", "step-4",
    ]  # fmt: skip
    # a resume that went back to step 2 drops the checkpoints after it
    _save(run.path, model, optimizer, scheduler, 2)
    assert [step for step, _ in run.checkpoint_dirs()] == [2]
    assert run.has_checkpoint()


def _corrupt(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_text("garbage\n")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "flipped":
        data = bytearray(path.read_bytes())
        data[-3] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "removed":
        path.unlink()


@pytest.mark.parametrize(
    ("file", "how", "complaint"),
    [
        ("tensors.safetensors", "garbage", "checksum mismatch"),
        ("tensors.safetensors", "truncated", "checksum mismatch"),
        ("tensors.safetensors", "flipped", "checksum mismatch"),
        ("tensors.safetensors", "removed", "missing"),
        ("state.json", "garbage", "invalid JSON"),
        ("state.json", "truncated", "invalid JSON"),
        ("state.json", "empty", "invalid JSON"),
    ],
)
def test_an_unreadable_newest_falls_back_with_one_warning(tmp_path, file, how, complaint):
    model, optimizer, scheduler = _toy()
    for step in (1, 2):
        _save(tmp_path, model, optimizer, scheduler, step)
    newest = tmp_path / "checkpoints" / "step-2"
    _corrupt(newest / file, how)
    warnings: list[str] = []
    saved = ckpt.load_checkpoint(tmp_path, warn=warnings.append)
    assert saved["state"].step == 1
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith(f"{newest / file}") and complaint in warnings[0]
    previous = tmp_path / "checkpoints" / "step-1"
    assert f"resuming from the previous checkpoint {previous}" in warnings[0]

    _corrupt(tmp_path / "checkpoints" / "step-1" / file, how)
    with pytest.raises(DptuneError) as info:
        ckpt.load_checkpoint(tmp_path, warn=warnings.append)
    message = str(info.value)
    assert message.startswith(f"{newest / file}") and "\n" not in message
    assert f"delete {tmp_path / 'checkpoints'} to train from the start" in message


@pytest.mark.parametrize(
    ("meta", "complaint"),
    [
        ({"format": "something-else"}, "not a dptune checkpoint"),
        ([1, 2, 3], "not a dptune checkpoint"),
        ({"format": "dptune-checkpoint", "version": 99}, "checkpoint version 99"),
        ("rename-state", "malformed checkpoint"),
        ("drop-optimizer", "malformed checkpoint"),
        ("zero-grouping", "group_factor 0 is not a positive integer"),
        ("text-grouping", "group_factor 'x' is not a positive integer"),
    ],
)
def test_a_foreign_checkpoint_is_one_line(tmp_path, meta, complaint):
    model, optimizer, scheduler = _toy()
    path = _save(tmp_path, model, optimizer, scheduler, 1)
    stored = json.loads((path / "state.json").read_text())
    if meta == "rename-state":
        stored["state"]["steps"] = stored["state"].pop("step")
    elif meta == "drop-optimizer":
        del stored["optimizer"]
    elif meta in ("zero-grouping", "text-grouping"):
        stored["state"]["group_factor"] = 0 if meta == "zero-grouping" else "x"
    else:
        stored = meta
    (path / "state.json").write_text(json.dumps(stored))
    with pytest.raises(DptuneError, match=complaint) as info:
        ckpt.load_checkpoint(tmp_path)
    assert str(info.value).startswith(str(path / "state.json")) and "\n" not in str(info.value)


def test_a_pickled_checkpoint_is_never_loaded(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    legacy = tmp_path / "checkpoints" / "last.pt"
    legacy.write_text("garbage\n")
    assert RunFolder(tmp_path).has_checkpoint()
    with pytest.raises(DptuneError, match="pickled checkpoint of an older dptune") as info:
        ckpt.load_checkpoint(tmp_path)
    assert str(info.value).startswith(str(legacy))


def _cli_main(monkeypatch, capsys, values: dict) -> tuple[int, str]:
    from dptune.cli.main import main

    monkeypatch.setattr(sys, "argv", ["dptune", "train", *cli.flags(values), "--resume"])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr().err


def test_resume_from_a_garbage_checkpoint_is_one_line_exit_2(base_config, monkeypatch, capsys):
    out = Path(base_config["out"])
    (out / "checkpoints" / "step-4").mkdir(parents=True)
    (out / "checkpoints" / "step-4" / "state.json").write_text("garbage\n")
    (out / "checkpoints" / "step-4" / "tensors.safetensors").write_text("garbage\n")
    (out / "checkpoints" / "last.json").write_text("garbage\n")
    code, err = _cli_main(monkeypatch, capsys, base_config)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert str(out / "checkpoints" / "step-4" / "state.json") in lines[0]
    assert "to train from the start" in lines[0]
    assert not (out / "metrics.json").exists() and not (out / "config.yaml").exists()


def _train_until_lost(trainer: Trainer, at_step: int) -> None:
    """Prepare and fit `trainer`, its forward failing at step `at_step` as if the node died."""
    trainer.prepare()
    real_loss, calls = trainer.model_forward, {"n": 0}

    def lost_at_step(batch):
        calls["n"] += 1
        if calls["n"] == at_step:
            raise RuntimeError("node lost")
        return real_loss(batch)

    trainer.model_forward = lost_at_step
    with pytest.raises(RuntimeError):
        trainer.fit()


def test_resume_skips_a_truncated_newest_and_stays_bit_identical(base_config, tmp_path, capsys):
    full = {**base_config, "out": str(tmp_path / "full"), "epochs": 2}
    train(make_config(full), progress=False)

    part = {**base_config, "out": str(tmp_path / "part"), "epochs": 2, "checkpoint_every": 1}
    _train_until_lost(Trainer(make_config(part), progress=False), at_step=7)
    newest = tmp_path / "part" / "checkpoints" / "step-6" / "tensors.safetensors"
    _corrupt(newest, "truncated")
    capsys.readouterr()
    started = time.perf_counter()
    train(make_config({**part, "resume": True}), progress=False)
    recovery_s = time.perf_counter() - started
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if line.startswith("warning:")] == [
        f"warning: {newest}: checksum mismatch (corrupt or truncated); resuming from the "
        f"previous checkpoint {tmp_path / 'part' / 'checkpoints' / 'step-5'}"
    ]
    for name in ("prompt.safetensors", "trainable.safetensors"):
        a = load_file(str(tmp_path / "full" / name))
        b = load_file(str(tmp_path / "part" / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert (tmp_path / "full" / "history.jsonl").read_text() == (
        tmp_path / "part" / "history.jsonl"
    ).read_text()
    record_fault("truncated newest checkpoint, then --resume", True, "none (1 step redone)",
                 recovery_s)  # fmt: skip


@pytest.fixture
def small_fs(tmp_path):
    """A 256 KiB tmpfs (needs root); the test is skipped, saying why, where mounting fails."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(small_fs):
    model, optimizer, scheduler = _toy()
    _save(small_fs, model, optimizer, scheduler, 1)
    fd = os.open(small_fs / "filler", os.O_WRONLY | os.O_CREAT)  # fill the disk
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0" * 4096)
    os.close(fd)
    with pytest.raises(DptuneError) as info:
        _save(small_fs, model, optimizer, scheduler, 2)
    message = str(info.value)
    assert message.startswith(f"{small_fs / 'checkpoints' / 'step-2'}: cannot write")
    assert "No space left on device" in message and "\n" not in message
    assert [p.name for p in (small_fs / "checkpoints").iterdir() if p.name != "last.json"] == [
        "step-1"
    ]  # no half-written folder
    assert ckpt.load_checkpoint(small_fs)["state"].step == 1


def test_the_batch_grouping_is_saved_and_an_older_checkpoint_keeps_its_own(tmp_path):
    model, optimizer, scheduler = _toy()
    state = ckpt.TrainState(step=1, group_factor=7)
    path = ckpt.save_checkpoint(
        tmp_path / "run", state, _trainable(model), None, optimizer, scheduler
    )
    assert ckpt.load_checkpoint(tmp_path / "run")["state"].group_factor == 7

    # written before the cap: no group_factor, and the run sorted within 50-batch mega-batches
    meta = json.loads((path / "state.json").read_text())
    del meta["state"]["group_factor"]
    (path / "state.json").write_text(json.dumps(meta))
    assert ckpt.load_checkpoint(tmp_path / "run")["state"].group_factor == 50


def test_a_resumed_run_batches_as_its_checkpoint_says(base_config, tmp_path, monkeypatch):
    from dptune.training import trainer as trainer_module

    part = {**base_config, "out": str(tmp_path / "part"), "checkpoint_every": 1}
    trainer = Trainer(make_config(part), progress=False)
    _train_until_lost(trainer, at_step=3)
    assert trainer.state.group_factor == 1  # 32 features at batch 8: a mega-batch per batch
    state_file = tmp_path / "part" / "checkpoints" / "step-2" / "state.json"
    meta = json.loads(state_file.read_text())
    assert meta["state"]["group_factor"] == 1
    del meta["state"]["group_factor"]  # as a checkpoint written before the cap
    state_file.write_text(json.dumps(meta))

    used, real_batches = [], trainer_module.epoch_batches
    monkeypatch.setattr(
        trainer_module, "epoch_batches", lambda *args: used.append(args[4]) or real_batches(*args)
    )
    train(make_config({**part, "resume": True}), progress=False)
    assert used and set(used) == {50}
