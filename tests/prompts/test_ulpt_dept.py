"""ULPT and DePT: ULPT's frozen projection comes back from its seed; DePT's update trains at its
own learning rate, reaches source tokens only (never padding or answers), and exports in its own
format; both train on the tiny T5 and their run folders predict as the runs did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dptune.backbones.causal import CausalBackbone
from dptune.backbones.loader import build_backbone
from dptune.config import make_config
from dptune.errors import DptuneError
from dptune.inference import Predictor
from dptune.prompts.dept.adapter import CONFIG_FILE, load_dept_adapter, read_dept_adapter
from dptune.prompts.ulpt.model import projection
from dptune.run import train
from dptune.run_folder import RunFolder
from dptune.tasks.registry import get_task
from dptune.training.data import Collator, build_eval_features, build_train_features
from helpers.cli import run_dptune
from helpers.faults import crash_at_step
from helpers.tiny_models import build_tiny_causal


def _config(model: Path, method: str, tmp_path: Path, superglue_dir: Path, **values) -> dict:
    return {
        "task": "cb", "method": method, "model": str(model), "data_dir": str(superglue_dir),
        "out": str(tmp_path / "run"), "prompt_length": 4, "max_source_length": 48,
        "max_target_length": 8, "batch_size": 8, "train_limit": 32, "log_every": 1,
        "device": "cpu", **values,
    }  # fmt: skip


# ---- ULPT -----------------------------------------------------------------------------------
def test_ulpt_projection_is_a_frozen_buffer_rebuilt_from_its_seed(tiny_t5_dir, tmp_path):
    cfg = make_config(_config(tiny_t5_dir, "ulpt", tmp_path, tmp_path, rank=3, seed=1))
    prompt = build_backbone(cfg).prompt
    assert not any(p is prompt.U for p in prompt.parameters())
    assert set(prompt.state_dict()) == {"Z", "scale", "shift"}  # U is never stored
    assert torch.equal(prompt.U, projection(3, 64, 0))
    other_run = build_backbone(cfg.model_copy(update={"seed": 2})).prompt
    assert torch.equal(other_run.U, prompt.U)  # the run's seed draws Z, not U
    assert not torch.equal(other_run.Z, prompt.Z)
    moved = make_config({**cfg.model_dump(), "method_config": {"rank": 3, "projection_seed": 7}})
    assert not torch.equal(build_backbone(moved).prompt.U, prompt.U)
    with torch.no_grad():
        prompt.scale.fill_(2.0)
        prompt.shift.fill_(0.5)
        assert torch.allclose(prompt(), (prompt.Z @ prompt.U) * 2.0 + 0.5)


# ---- DePT on the backbones ------------------------------------------------------------------
def _randomise_update(prompt) -> None:
    with torch.no_grad():
        prompt.update_b.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(3))


def test_dept_update_trains_at_its_own_learning_rate(tiny_t5_dir, tmp_path):
    cfg = make_config(_config(tiny_t5_dir, "dept", tmp_path, tmp_path, rank=4, update_lr=0.01))
    backbone = build_backbone(cfg)
    groups = backbone.param_groups(0.3, 1e-3, 1e-5)
    prompt = backbone.prompt
    assert [g["lr"] for g in groups] == [0.3, 0.01]
    assert groups[0]["params"] == [prompt.weight]
    assert groups[1]["params"] == [prompt.update_a, prompt.update_b]
    embeds = torch.randn(2, 5, 64)
    assert torch.equal(prompt.adjust_embeddings(embeds), embeds)  # B starts at zero
    _randomise_update(prompt)
    positions = torch.tensor([[0, 1, 2, -1, -1], [-1, 0, 1, 47, 48]])
    adjusted = prompt.adjust_embeddings(embeds, positions)
    update = prompt.update().detach()
    assert torch.allclose(adjusted[0, :3], embeds[0, :3] + update[:3])
    assert torch.equal(adjusted[0, 3:], embeds[0, 3:])  # not source tokens
    assert torch.allclose(adjusted[1, 1:4], embeds[1, 1:4] + update[[0, 1, 47]])
    assert torch.equal(adjusted[1, [0, 4]], embeds[1, [0, 4]])  # padding; past s = 48


@torch.no_grad()
def test_dept_seq2seq_generation_matches_peft_when_the_update_is_zero(
    tiny_t5_dir, tmp_path, superglue_dir
):
    cfg = make_config(_config(tiny_t5_dir, "dept", tmp_path, superglue_dir, rank=4))
    backbone = build_backbone(cfg).eval()
    task = get_task("cb", "paper")
    features = build_eval_features(task, task.read(str(superglue_dir), "val")[:3], backbone, 48, 8)
    batch = Collator(backbone.tokenizer.pad_token_id)(features)
    ours = backbone.generate(batch, 6)  # encodes [P; adjusted source] itself
    out = backbone.runner.generate(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
        max_new_tokens=6, do_sample=False, num_beams=1,
    )  # fmt: skip
    assert ours == [
        t.strip() for t in backbone.tokenizer.batch_decode(out, skip_special_tokens=True)
    ]
    _randomise_update(backbone.prompt)
    assert backbone.rank_scores(batch).isfinite().any()


def test_dept_seq2seq_loss_sees_the_update_as_rank_scoring_does(
    tiny_t5_dir, tmp_path, superglue_dir
):
    """The loss goes through PEFT with adjusted embeddings, scoring through `encode`: both
    give the model [P; source + update]."""
    cfg = make_config(_config(tiny_t5_dir, "dept", tmp_path, superglue_dir, rank=4))
    backbone = build_backbone(cfg).eval()
    _randomise_update(backbone.prompt)
    task = get_task("cb", "paper")
    features = build_train_features(task, task.read(str(superglue_dir), "train")[:3], backbone,
                                    48, 8)  # fmt: skip
    batch = Collator(backbone.tokenizer.pad_token_id)(features)
    with torch.no_grad():
        encoded, mask = backbone.encode(batch["input_ids"], batch["attention_mask"])
        expected = backbone.model(encoder_outputs=encoded, attention_mask=mask,
                                  labels=batch["labels"]).loss  # fmt: skip
        assert backbone.loss(batch).item() == pytest.approx(expected.item(), abs=1e-5)
        backbone.prompt.update_b.zero_()
        assert backbone.loss(batch).item() != pytest.approx(expected.item(), abs=1e-3)


def test_dept_on_an_encoder_updates_the_prompted_input_not_the_label_texts(
    tiny_bert_dir, tmp_path, superglue_dir
):
    values = _config(tiny_bert_dir, "dept", tmp_path, superglue_dir, rank=4, head="similarity")
    backbone = build_backbone(make_config(values)).eval()
    task = get_task("cb", "paper")
    features = build_eval_features(task, task.read(str(superglue_dir), "val")[:3], backbone, 48, 8)
    batch = Collator(backbone.tokenizer.pad_token_id)(features)
    with torch.no_grad():
        before = backbone.pooled(batch), backbone.candidate_embeddings(batch)
        _randomise_update(backbone.prompt)
        after = backbone.pooled(batch), backbone.candidate_embeddings(batch)
    assert not torch.allclose(before[0], after[0])
    assert torch.equal(before[1], after[1])


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal("llama", tmp_path_factory.mktemp("llama") / "llama")


@torch.no_grad()
def test_dept_on_a_causal_lm_reaches_source_tokens_only_whatever_the_padding(
    llama, tmp_path, superglue_dir
):
    cfg = make_config(
        _config(
            llama, "dept", tmp_path, superglue_dir, format="natural", rank=4, max_source_length=100
        )
    )
    backbone = build_backbone(cfg).eval()
    assert isinstance(backbone, CausalBackbone)
    _randomise_update(backbone.prompt)
    task = get_task("cb", "natural")
    collate = Collator(backbone.tokenizer.pad_token_id)
    features = build_eval_features(task, task.read(str(superglue_dir), "val")[:4], backbone, 100, 8)
    assert len({len(f.input_ids) for f in features}) > 1  # the batch needs padding
    alone = backbone.rank_scores(collate(features[:1]))[0]
    batched = backbone.rank_scores(collate(features))[0]
    assert torch.allclose(alone, batched, atol=1e-5, rtol=0)

    train_features = build_train_features(
        task, task.read(str(superglue_dir), "train")[:3], backbone, 100, 8
    )
    loss = backbone.loss(collate(train_features))
    total, count = 0.0, 0
    for f in train_features:  # the reference: one unpadded row, the update on its source only
        embed = backbone.model.get_input_embeddings()
        source = embed(torch.tensor(f.input_ids)) + backbone.prompt.update()[: len(f.input_ids)]
        row = torch.cat([backbone.prompt(), source, embed(torch.tensor(f.target_ids))])
        log_probs = backbone.model(inputs_embeds=row[None]).logits[0].log_softmax(-1)
        start = 4 + len(f.input_ids) - 1
        total -= sum(log_probs[start + j, t].item() for j, t in enumerate(f.target_ids))
        count += len(f.target_ids)
    assert loss.item() == pytest.approx(total / count, abs=1e-4)


# ---- training, export and loading back ------------------------------------------------------
@pytest.mark.parametrize(("method", "fields"), [("ulpt", {"rank": 2}), ("dept", {"rank": 4})])
def test_training_lowers_the_loss_and_the_run_folder_predicts_as_the_run_did(
    method, fields, tiny_t5_dir, tmp_path, superglue_dir
):
    values = _config(tiny_t5_dir, method, tmp_path, superglue_dir, epochs=2, **fields)
    if method == "dept":
        values["update_lr"] = 0.05
    cfg = make_config(values)
    start = {k: v.clone() for k, v in build_backbone(cfg).prompt.state_dict().items()}
    metrics = train(cfg, progress=False)
    folder = RunFolder(cfg.out)
    losses = [row["train_loss"] for row in folder.read_history() if "train_loss" in row]
    assert sum(losses[-2:]) < sum(losses[:2])
    trained = {k.removeprefix("prompt."): v for k, v in folder.read_trainable().items()}
    assert set(trained) == set(start)
    assert all(not torch.equal(trained[k], start[k]) for k in start)  # every factor trained
    assert metrics["trainable_params"] == sum(v.numel() for v in start.values())

    predictor = Predictor.from_run(cfg.out)  # the path `dptune predict` and pyfunc serving take
    task = predictor.task
    examples = task.read(str(superglue_dir), "val")
    assert predictor.predict_examples(examples) == folder.read_predictions(task, "val")

    adapter = folder.adapter_dir
    if method == "ulpt":  # a plain prompt: PEFT's adapter, and P in prompt.safetensors
        assert (adapter / "adapter_config.json").is_file()
        assert torch.allclose(folder.read_prompt(), predictor.backbone.prompt_matrix())
        return
    assert not (adapter / "adapter_config.json").exists()  # PEFT refuses it, not misloads it
    config, tensors = read_dept_adapter(adapter)
    assert (config["num_virtual_tokens"], config["max_source_length"], config["rank"]) == (4, 48, 4)
    fresh = build_backbone(cfg).eval()
    load_dept_adapter(fresh.prompt, adapter)
    batch = Collator(fresh.tokenizer.pad_token_id)(
        build_eval_features(task, examples[:4], fresh, 48, 8)
    )
    with torch.no_grad():
        assert torch.equal(fresh.rank_scores(batch), predictor.backbone.rank_scores(batch))
    with pytest.raises(DptuneError, match="a dept run is not a plain prompt"):
        folder.read_prompt()


@pytest.mark.parametrize(("method", "fields"), [("ulpt", {"rank": 2}), ("dept", {"rank": 4})])
def test_a_resumed_run_ends_as_an_uninterrupted_one(
    method, fields, tiny_t5_dir, tmp_path, superglue_dir
):
    """ULPT's U comes back from its seed, DePT's two optimizer groups from the checkpoint."""
    values = _config(tiny_t5_dir, method, tmp_path, superglue_dir, epochs=2, **fields)
    train(make_config({**values, "out": str(tmp_path / "full")}), progress=False)
    crashed = {**values, "out": str(tmp_path / "part"), "checkpoint_every": 1}
    crash_at_step(make_config(crashed), 6)  # mid-epoch 2 (4 steps an epoch)
    train(make_config({**crashed, "resume": True}), progress=False)
    full = RunFolder(tmp_path / "full").read_trainable()
    part = RunFolder(tmp_path / "part").read_trainable()
    assert full.keys() == part.keys()
    assert all(torch.equal(full[k], part[k]) for k in full)


# ---- bad input: one line, exit 2 -------------------------------------------------------------
def _refused(tmp_path: Path, *args: str) -> str:
    done = run_dptune("train", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    return lines[0]


def _flags(model: Path, method: str, tmp_path: Path, superglue_dir: Path, **values) -> list[str]:
    base = _config(model, method, tmp_path, superglue_dir, max_steps=1, **values)
    return [f"--{k.replace('_', '-')}={v}" for k, v in base.items()]


def test_bad_ranks_and_lengths_are_one_line(tiny_t5_dir, tiny_bert_dir, tmp_path, superglue_dir):
    line = _refused(tmp_path, *_flags(tiny_t5_dir, "ulpt", tmp_path, superglue_dir, rank=5))
    assert line.startswith("error: rank: 5 exceeds min(c, e) = min(4, 64)")
    line = _refused(tmp_path, *_flags(tiny_t5_dir, "dept", tmp_path, superglue_dir, rank=65))
    assert line.startswith("error: rank: 65 exceeds min(s, e) = min(48, 64)")
    too_long = _flags(tiny_bert_dir, "dept", tmp_path, superglue_dir, max_source_length=600)
    line = _refused(tmp_path, *too_long)
    assert line.startswith("error: max_source_length: 600 source tokens + 4 prompt tokens exceed")


def test_a_dept_adapter_folder_is_not_a_peft_adapter(tmp_path):
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"format": "peft"}))
    with pytest.raises(DptuneError, match="not a dptune-dept adapter config"):
        read_dept_adapter(tmp_path)
