"""The T5 backbone on a tiny local model: freezing, training, rank scoring, PEFT round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM

from dptune.backbones.loader import build_backbone
from dptune.backbones.seq2seq import PROMPT_STATE_FILE, Seq2SeqBackbone
from dptune.config import TrainConfig
from helpers.batches import make_batch, train_steps

SOURCES = [
    "premise: The cat sat on the mat. hypothesis: A cat is sitting.",
    "premise: It rained all day. hypothesis: The ground is dry.",
    "premise: He bought a car. hypothesis: He owns nothing at all today.",
]
CANDIDATES = [["0", "1", "2"], ["0", "1", "2"], ["0", "1"]]  # the last row pads K
GOLD = [0, 1, 1]


def backbone_for(model_dir: Path, method: str = "dpt", **overrides: object) -> Seq2SeqBackbone:
    values = dict(task="cb", model=str(model_dir), data_dir="d", out="o", prompt_length=8)
    backbone = build_backbone(TrainConfig(method=method, **{**values, **overrides}))
    assert isinstance(backbone, Seq2SeqBackbone)
    return backbone


@pytest.fixture
def batch(tiny_t5_dir: Path) -> dict[str, torch.Tensor]:
    return make_batch(backbone_for(tiny_t5_dir).tokenizer, SOURCES, CANDIDATES, GOLD)


@pytest.mark.parametrize("method", ["dpt", "pt", "residual", "probe"])
def test_only_the_prompt_trains(tiny_t5_dir: Path, batch: dict, method: str) -> None:
    backbone = backbone_for(tiny_t5_dir, method)
    assert not any(p.requires_grad for p in backbone.model.parameters())
    backbone.loss(batch).backward()
    assert all(p.grad is None for p in backbone.model.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.prompt.parameters())
    counts = backbone.param_counts()
    assert counts["trainable_params"] == counts["prompt_params"] > 0
    assert all(name.startswith("prompt.") for name in backbone.trainable_state_dict())


def test_loss_decreases_on_a_toy_batch(tiny_t5_dir: Path, batch: dict) -> None:
    losses = train_steps(backbone_for(tiny_t5_dir), batch, steps=8)
    assert losses[-1] < losses[0] - 0.5


def test_rank_scores_are_candidate_log_likelihoods(tiny_t5_dir: Path, batch: dict) -> None:
    backbone = backbone_for(tiny_t5_dir)
    with torch.no_grad():
        scores = backbone.rank_scores(batch)
    assert scores.shape == (3, 3)
    assert torch.isinf(scores[2, 2]) and scores[2, 2] < 0
    assert torch.isfinite(scores[:, :2]).all() and (scores[:, :2] < 0).all()
    # the gold candidate's score is minus the summed token loss of the PEFT forward path
    for row in range(3):
        single = {k: v[row : row + 1] for k, v in batch.items()}
        with torch.no_grad():
            mean_loss = backbone.loss(single)
        num_tokens = (single["labels"] != -100).sum()
        torch.testing.assert_close(scores[row, GOLD[row]], -mean_loss * num_tokens)


RAGGED_CANDIDATES = [  # K = 4, lengths vary, two rows pad K
    ["yes", "no", "maybe later today", "x"],
    ["entailment", "no"],
    ["a b c d e", "b", "c"],
]


def reference_scores(backbone: Seq2SeqBackbone, batch: dict) -> torch.Tensor:
    """Each candidate on its own through the PEFT forward: its summed target log-probabilities."""
    size, num_cands, _ = batch["cand_ids"].shape
    scores = torch.full((size, num_cands), float("-inf"))
    for row in range(size):
        for k in range(num_cands):
            if not batch["cand_valid"][row, k]:
                continue
            keep = batch["cand_mask"][row, k].bool()
            labels = batch["cand_ids"][row, k][keep].unsqueeze(0)
            logits = backbone.runner(
                input_ids=batch["input_ids"][row : row + 1],
                attention_mask=batch["attention_mask"][row : row + 1],
                labels=labels,
            ).logits
            scores[row, k] = logits.log_softmax(-1).gather(-1, labels.unsqueeze(-1)).sum()
    return scores


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("per_chunk", [1, 2, 4])
def test_rank_scores_match_one_candidate_at_a_time(
    tiny_t5_dir: Path, attention: str, per_chunk: int
) -> None:
    backbone = backbone_for(tiny_t5_dir).eval()
    backbone.model.set_attn_implementation(attention)
    batch = make_batch(backbone.tokenizer, SOURCES, RAGGED_CANDIDATES, [0, 1, 1])
    size, num_cands, cand_len = batch["cand_ids"].shape
    assert num_cands == 4
    backbone.rank_logits_budget = per_chunk * size * cand_len * backbone.model.config.vocab_size
    with torch.no_grad():
        scores = backbone.rank_scores(batch)
        expected = reference_scores(backbone, batch)
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=1e-5)
    assert torch.isinf(scores[1, 2:]).all() and torch.isinf(scores[2, 3])


@pytest.mark.parametrize("per_chunk", [1, 4])
def test_rank_scores_share_one_cross_attention_cache(tiny_t5_dir: Path, per_chunk: int) -> None:
    """Every decoder call reads the same keys of the B sources: projected once, never copied."""
    backbone = backbone_for(tiny_t5_dir).eval()
    batch = make_batch(backbone.tokenizer, SOURCES, RAGGED_CANDIDATES, [0, 1, 1])
    size, num_cands, cand_len = batch["cand_ids"].shape
    backbone.rank_logits_budget = per_chunk * size * cand_len * backbone.model.config.vocab_size
    keys: list[torch.Tensor] = []

    def record(_module: object, _args: object, kwargs: dict, _out: object) -> None:
        keys.append(kwargs["cache"].cross_attention_cache.layers[0].keys)

    attention = backbone.model.get_decoder().block[0].layer[1].EncDecAttention
    hook = attention.register_forward_hook(record, with_kwargs=True)
    with torch.no_grad():
        backbone.rank_scores(batch)
    hook.remove()
    assert len(keys) == num_cands // per_chunk
    assert all(k.shape[0] == size and k.data_ptr() == keys[0].data_ptr() for k in keys)


def test_generate_returns_text(tiny_t5_dir: Path, batch: dict) -> None:
    backbone = backbone_for(tiny_t5_dir)
    train_steps(backbone, batch, steps=3)
    texts = backbone.generate(batch, max_new_tokens=3)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert all("</s>" not in t and "<pad>" not in t for t in texts)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
def test_peft_round_trip_reproduces_prompt_and_logits(
    tiny_t5_dir: Path, batch: dict, tmp_path: Path
) -> None:
    backbone = backbone_for(tiny_t5_dir)
    train_steps(backbone, batch, steps=2)
    backbone.eval()
    backbone.save_adapter(tmp_path / "adapter")

    base = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5_dir)
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    assert loaded.peft_config["default"].num_transformer_submodules == 1
    prompt = backbone.prompt_matrix()
    torch.testing.assert_close(loaded.prompt_encoder["default"].embedding.weight, prompt)

    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    with torch.no_grad():
        theirs = loaded(**inputs)
        ours = backbone.runner(**inputs)
        our_loss = backbone.loss(batch)
        our_scores = backbone.rank_scores(batch)
    torch.testing.assert_close(theirs.logits, ours.logits)
    torch.testing.assert_close(theirs.loss, our_loss)
    # rank scoring (our own prepend) agrees with the loaded adapter's logits
    gold_ids = batch["labels"].clamp_min(0)
    token_logp = theirs.logits.log_softmax(-1).gather(-1, gold_ids.unsqueeze(-1)).squeeze(-1)
    gold_scores = (token_logp * (batch["labels"] != -100)).sum(-1)
    torch.testing.assert_close(our_scores[torch.arange(3), torch.tensor(GOLD)], gold_scores)

    factors = load_file(str(tmp_path / "adapter" / PROMPT_STATE_FILE))
    torch.testing.assert_close(factors["A"] @ factors["B"], prompt)


def test_trainable_state_round_trip(tiny_t5_dir: Path, batch: dict) -> None:
    trained = backbone_for(tiny_t5_dir)
    train_steps(trained, batch, steps=2)
    fresh = backbone_for(tiny_t5_dir)
    assert not torch.allclose(fresh.prompt_matrix(), trained.prompt_matrix())
    fresh.load_trainable_state_dict(trained.trainable_state_dict())
    torch.testing.assert_close(fresh.prompt_matrix(), trained.prompt_matrix())


def test_probe_backbone_logs_sigma_stats(tiny_t5_dir: Path) -> None:
    stats = backbone_for(tiny_t5_dir, "probe").prompt.log_stats()
    assert stats == {"sigma_pos": 8.0, "sigma_neg": 0.0, "rank": 8.0}


def test_finetune_trains_every_weight(tiny_t5_dir: Path, batch: dict, tmp_path: Path) -> None:
    backbone = backbone_for(tiny_t5_dir, "finetune")
    assert backbone.prompt is None and backbone.prompt_matrix() is None
    assert all(p.requires_grad for p in backbone.model.parameters())
    counts = backbone.param_counts()
    total = sum(p.numel() for p in backbone.model.parameters())
    assert counts == {"trainable_params": total, "prompt_params": 0, "head_params": 0}
    losses = train_steps(backbone, batch, steps=4, lr=1e-3)
    assert losses[-1] < losses[0]
    assert backbone.rank_scores(batch).shape == (3, 3)
    backbone.save_adapter(tmp_path / "model")
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "model")
    torch.testing.assert_close(reloaded.lm_head.weight, backbone.model.lm_head.weight)
