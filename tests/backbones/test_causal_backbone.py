"""The decoder-only backbone on tiny random models of six families: exact under padding and
caching, answer-only loss normalised by target tokens, adapters stock PEFT loads, and the
parameter counts of every method."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dptune.backbones.causal import CausalBackbone
from dptune.backbones.loader import build_backbone
from dptune.config import make_config
from dptune.errors import DptuneError
from dptune.tasks.registry import get_task
from dptune.training.data import Collator, build_eval_features, build_train_features
from helpers.tiny_models import build_tiny_causal

FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "phi", "gpt2")
C, E = 4, 64  # prompt tokens, the tiny models' width


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("causal")
    return {kind: build_tiny_causal(kind, root / kind) for kind in FAMILIES}


def _backbone(model: Path, method: str = "dpt", **values: object) -> CausalBackbone:
    cfg = make_config({
        "task": "cb", "method": method, "model": str(model), "data_dir": "d", "out": "o",
        "prompt_length": C, "format": "natural", "max_source_length": 100,
        "max_target_length": 8, **values,
    })  # fmt: skip
    backbone = build_backbone(cfg).eval()
    assert isinstance(backbone, CausalBackbone)
    return backbone


def _features(backbone: CausalBackbone, superglue_dir: Path, n: int = 4) -> list:
    task = get_task("cb", "natural")
    examples = task.read(str(superglue_dir), "val")[:n]
    return build_eval_features(task, examples, backbone, 100, 8)


def _collate(backbone: CausalBackbone, features: list) -> dict[str, torch.Tensor]:
    return Collator(backbone.tokenizer.pad_token_id)(features)


def _reference_logits(backbone: CausalBackbone, ids: list[int]) -> torch.Tensor:
    """Logits of [P | ids] for one unpadded row, through the model's plain forward."""
    embeds = backbone.model.get_input_embeddings()(torch.tensor(ids))
    if backbone.prompt is not None:
        embeds = torch.cat([backbone.prompt(), embeds])
    return backbone.model(inputs_embeds=embeds[None]).logits[0].float()


@pytest.mark.parametrize("kind", FAMILIES)
@torch.no_grad()
def test_rank_scores_are_exact_and_independent_of_padding(kind, models, superglue_dir):
    backbone = _backbone(models[kind])
    features = _features(backbone, superglue_dir)
    assert len({len(f.input_ids) for f in features}) > 1  # the batch needs padding
    alone = backbone.rank_scores(_collate(backbone, features[:1]))[0]
    batched = backbone.rank_scores(_collate(backbone, features))[0]
    assert torch.allclose(alone, batched, atol=1e-5, rtol=0)
    source = features[0].input_ids
    expected = []
    for cand in features[0].cand_ids:  # each candidate scored alone, without a cache
        log_probs = _reference_logits(backbone, source + cand).log_softmax(-1)
        start = C + len(source) - 1
        expected.append(sum(log_probs[start + j, t].item() for j, t in enumerate(cand)))
    assert torch.allclose(alone, torch.tensor(expected), atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", FAMILIES)
@torch.no_grad()
def test_greedy_generation_equals_a_no_cache_reference_at_logit_level(kind, models, superglue_dir):
    backbone = _backbone(models[kind])
    features = _features(backbone, superglue_dir)
    tokens, logits = backbone.greedy(_collate(backbone, features[:1]), 5)
    ids = list(features[0].input_ids)
    for step in range(tokens.shape[1]):
        expected = _reference_logits(backbone, ids)[-1]
        assert torch.allclose(logits[0, step], expected, atol=1e-4, rtol=0), step
        ids.append(int(expected.argmax()))
        if ids[-1] == backbone.tokenizer.eos_token_id:
            break
    _, batched = backbone.greedy(_collate(backbone, features), 5)
    steps = min(batched.shape[1], logits.shape[1])
    assert torch.allclose(batched[0, :steps], logits[0, :steps], atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_the_loss_covers_answer_tokens_normalised_by_their_count(kind, models, superglue_dir):
    backbone = _backbone(models[kind])
    task = get_task("cb", "natural")
    examples = task.read(str(superglue_dir), "train")[:3]
    features = build_train_features(task, examples, backbone, 100, 8)
    batch = _collate(backbone, features)
    with torch.no_grad():
        loss = backbone.loss(batch)
        total, count = 0.0, 0
        for f in features:
            log_probs = _reference_logits(backbone, f.input_ids + f.target_ids).log_softmax(-1)
            start = C + len(f.input_ids) - 1
            total -= sum(log_probs[start + j, t].item() for j, t in enumerate(f.target_ids))
            count += len(f.target_ids)
        assert loss.item() == pytest.approx(total / count, abs=1e-4)
        doubled = backbone.loss({**batch, "num_target_tokens": torch.tensor(2 * count)})
        assert doubled.item() == pytest.approx(loss.item() / 2, abs=1e-6)


@pytest.mark.parametrize("method", ["dpt", "lora"])
def test_the_loss_computes_logits_for_the_answers_only(models, superglue_dir, method):
    """The LM head runs over the answer positions alone, not over [P | source] (LoRA's
    PEFT wrapper passes the request on to the model)."""
    backbone = _backbone(models["llama"], method)
    task = get_task("cb", "natural")
    features = build_train_features(
        task, task.read(str(superglue_dir), "train")[:3], backbone, 100, 8
    )
    widths = []
    hook = backbone.model.register_forward_hook(
        lambda m, a, out: widths.append(out.logits.shape[1])
    )
    with torch.no_grad():
        backbone.loss(_collate(backbone, features))
    hook.remove()
    assert widths == [max(len(f.target_ids) for f in features) + 1]


@pytest.mark.parametrize("method", ["dpt", "lora"])
def test_rank_scoring_computes_the_prefix_s_last_logits_only(models, superglue_dir, method):
    """[P | source] runs once with the LM head over its last position; each candidate then
    runs on its cache over its own tokens."""
    backbone = _backbone(models["llama"], method)
    batch = _collate(backbone, _features(backbone, superglue_dir))
    widths = []
    hook = backbone.model.register_forward_hook(
        lambda m, a, out: widths.append(out.logits.shape[1])
    )
    with torch.no_grad():
        backbone.rank_scores(batch)
    hook.remove()
    cand_len = batch["cand_ids"].shape[2]
    assert widths == [1] + [cand_len] * batch["cand_ids"].shape[1]


def test_answers_follow_the_model_s_conventions(models, superglue_dir):
    backbone = _backbone(models["llama"])
    tokenizer = backbone.tokenizer
    (answer,) = backbone.target_ids(["entailment"], 8, _encode)
    assert answer[-1] == tokenizer.eos_token_id and tokenizer.bos_token_id not in answer
    assert tokenizer.decode(answer[:-1]) == " entailment"  # a leading space, no BOS
    (source,) = backbone.source_ids(["premise: a " * 40 + "question"], 16, _encode)
    assert len(source) == 16 and source[0] == tokenizer.bos_token_id  # BOS kept
    assert tokenizer.decode(source[1:]).endswith("question\nAnswer:")  # the end kept


def test_a_chat_template_wraps_the_source_as_a_user_turn(models):
    backbone = _backbone(models["qwen2"], chat_template="model")
    (source,) = backbone.source_ids(["premise: it rains"], 48, _encode)
    text = backbone.tokenizer.decode(source)
    assert text.startswith("<|im_start|>user\npremise: it rains\nAnswer:<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")


def _encode(tokenizer, texts, max_length, **options):
    from dptune.training import token_cache

    return token_cache.tokenize(tokenizer, texts, max_length, **options)


@pytest.mark.parametrize("kind", FAMILIES)
def test_the_adapter_loads_in_stock_peft_with_the_same_logits(
    kind, models, superglue_dir, tmp_path
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    backbone = _backbone(models[kind])
    backbone.save_adapter(tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(models[kind])
    peft_model = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    source = _features(backbone, superglue_dir, 1)[0].input_ids
    with torch.no_grad():
        theirs = peft_model(input_ids=torch.tensor([source])).logits[0, -1]
        ours = _reference_logits(backbone, source)[-1]
    assert torch.allclose(theirs, ours, atol=1e-5, rtol=0)


@torch.no_grad()
def test_stock_peft_generates_correctly_only_without_its_cache(models, superglue_dir, tmp_path):
    """docs/llm.md's statement for the pinned PEFT 0.21.2 + transformers 5.24: PEFT's cached
    generate re-inserts the prompt at every step from the second new token on."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    backbone = _backbone(models["llama"])
    backbone.save_adapter(tmp_path / "adapter")
    peft_model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(models["llama"]), tmp_path / "adapter"
    ).eval()
    source = _features(backbone, superglue_dir, 1)[0].input_ids
    _, ours = backbone.greedy(_collate(backbone, _features(backbone, superglue_dir, 1)), 4)
    gaps = {}
    ones = torch.ones(1, len(source), dtype=torch.long)
    for use_cache in (False, True):
        out = peft_model.generate(
            input_ids=torch.tensor([source]), attention_mask=ones,
            max_new_tokens=ours.shape[1], do_sample=False, use_cache=use_cache, output_scores=True,
            return_dict_in_generate=True, pad_token_id=backbone.tokenizer.eos_token_id,
        )  # fmt: skip
        theirs = torch.stack(out.scores, dim=1)[0]
        steps = min(len(theirs), ours.shape[1])
        gaps[use_cache] = (theirs[:steps] - ours[0, :steps]).abs().max().item()
    assert gaps[False] < 1e-4
    assert gaps[True] > 1e-2, "PEFT's cached generate now matches: update docs/llm.md"


@pytest.mark.parametrize(
    ("method", "values", "expected"),
    [
        ("dpt", {"bottleneck": 2}, 2 * (C + E)),
        ("pt", {}, C * E),
        ("residual", {"residual_hidden": 8}, C * E + 2 * E * 8 + 8 + E + 2 * E),
        ("probe", {}, E * E + min(C, E) + C * C),
    ],
)
def test_every_prompt_method_counts_its_parameters_for_the_model_s_e(
    method, values, expected, models
):
    backbone = _backbone(models["qwen3"], method, **values)
    counts = backbone.param_counts()
    assert counts["trainable_params"] == counts["prompt_params"] == expected


def test_finetune_trains_every_weight_and_no_prompt(models):
    backbone = _backbone(models["phi"], "finetune")
    assert backbone.prompt is None
    total = sum(p.numel() for p in backbone.model.parameters())
    assert backbone.param_counts()["trainable_params"] == total


def test_pt_starts_from_ordinary_vocabulary_rows(models):
    backbone = _backbone(models["llama"], "pt")
    rows = backbone.model.get_input_embeddings().weight
    special = set(backbone.tokenizer.all_special_ids)
    ids = backbone.prompt.init_token_ids
    assert ids and not special & set(ids)
    assert torch.equal(backbone.prompt.weight.detach(), rows[ids].detach())


def test_bad_causal_inputs_are_one_line(models, tmp_path):
    with pytest.raises(DptuneError, match=r"exceed the 128 positions"):
        _backbone(models["llama"], max_source_length=120)
    with pytest.raises(DptuneError, match="chat_template: Input should be 'none' or 'model'"):
        _backbone(models["llama"], chat_template="vicuna")
    with pytest.raises(DptuneError, match="backbone: .* is a causal model .*, not seq2seq"):
        _backbone(models["llama"], backbone="seq2seq")
