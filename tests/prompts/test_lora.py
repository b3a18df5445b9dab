"""LoRA through PEFT: PEFT's own parameter count on every backbone kind, a standard PEFT adapter
that `PeftModel.from_pretrained` reloads to the same logits, and bad settings as one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from pydantic import ValidationError
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    LlamaConfig,
    T5Config,
)

from dptune.backbones.loader import build_backbone
from dptune.config import make_config
from dptune.errors import DptuneError
from dptune.prompts.lora.adapter import add_lora
from dptune.prompts.lora.config import LoraMethodConfig
from dptune.prompts.registry import get_method

AUTO = {"seq2seq": AutoModelForSeq2SeqLM, "causal": AutoModelForCausalLM, "encoder": AutoModel}


def lora_backbone(model_dir: Path, **fields):
    values = {"task": "cb", "method": "lora", "model": str(model_dir), "out": "unused",
              "data_dir": "unused", "max_source_length": 48, "max_target_length": 8, "rank": 4,
              **fields}  # fmt: skip
    return build_backbone(make_config(values))


def formula(model: torch.nn.Module, rank: int) -> int:
    """r (in + out) for each adapted matrix: A is r x in, B is out x r."""
    return sum(
        rank * (m.in_features + m.out_features) for m in model.modules() if isinstance(m, LoraLayer)
    )


@pytest.fixture(params=["tiny_t5_dir", "tiny_llama_dir", "tiny_bert_dir"])
def model_dir(request) -> Path:
    return request.getfixturevalue(request.param)


def test_the_trainable_count_is_peft_s_own(model_dir):
    backbone = lora_backbone(model_dir)
    counts = backbone.param_counts()
    peft_trainable, _ = backbone.adapter.get_nb_trainable_parameters()
    assert counts["prompt_params"] == 0
    assert counts["trainable_params"] == peft_trainable + counts["head_params"]
    assert peft_trainable == formula(backbone.model, 4) > 0
    # only the LoRA matrices (and an encoder's head) train
    trainable = [n for n, p in backbone.named_parameters() if p.requires_grad]
    assert all("lora_" in n or n.startswith("head.") for n in trainable)
    if backbone.kind == "encoder":
        assert counts["head_params"] == 64 * 3 + 3  # CB's three classes on hidden 64


def test_default_targets_are_the_query_and_value_projections(tiny_t5_dir, tiny_llama_dir):
    t5 = lora_backbone(tiny_t5_dir).adapter.peft_config["default"]
    llama = lora_backbone(tiny_llama_dir).adapter.peft_config["default"]
    assert set(t5.target_modules) == {"q", "v"} and (t5.r, t5.lora_alpha) == (4, 32.0)
    assert set(llama.target_modules) == {"q_proj", "v_proj"}


def _meta(kind: str, config) -> torch.nn.Module:
    with torch.device("meta"):
        return AUTO[kind].from_config(config)


@pytest.mark.parametrize(
    ("kind", "config", "expected"),
    [
        # T5-small / base / large: n encoder layers (q, v) + n decoder layers (self and cross
        # q, v), each matrix e x e: 6 n matrices of 8 (e + e) parameters
        ("seq2seq", T5Config(d_model=512, d_ff=2048, num_layers=6, num_heads=8), 294_912),
        ("seq2seq", T5Config(d_model=768, d_ff=3072, num_layers=12, num_heads=12), 884_736),
        ("seq2seq", T5Config(d_model=1024, d_ff=4096, num_layers=24, num_heads=16), 2_359_296),
        # SmolLM2-135M's shape: 30 layers, q 576 -> 576, v 576 -> 192 (3 KV heads of 64)
        ("causal", LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                               num_attention_heads=9, num_key_value_heads=3, vocab_size=49152),
         30 * 8 * ((576 + 576) + (576 + 192))),
    ],
)  # fmt: skip
def test_full_size_counts_match_the_formula(kind, config, expected):
    model = _meta(kind, config)
    adapted = add_lora(LoraMethodConfig(), model, kind=kind, seed=0)
    assert adapted.get_nb_trainable_parameters()[0] == formula(model, 8) == expected


def _perturb(backbone) -> None:
    """B starts at zero (LoRA starts as the identity): give it values, so the adapter matters."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in backbone.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def _logits(model, kind: str) -> torch.Tensor:
    ids = torch.tensor([[5, 17, 42, 9, 1]])
    if kind == "seq2seq":
        return model(input_ids=ids, decoder_input_ids=ids[:, :3]).logits
    if kind == "causal":
        return model(input_ids=ids).logits
    return model(input_ids=ids).last_hidden_state


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning")  # PEFT's probe
def test_the_export_is_a_standard_peft_lora_adapter(model_dir, tmp_path):
    backbone = lora_backbone(model_dir)
    _perturb(backbone)
    backbone.eval()
    backbone.save_adapter(tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        p.name for p in (tmp_path / "adapter").iterdir()
    }
    base = AUTO[backbone.kind].from_pretrained(model_dir)
    with torch.no_grad():
        plain = _logits(base, backbone.kind)
        reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
        expected = _logits(backbone.model, backbone.kind)
        got = _logits(reloaded.base_model.model, backbone.kind)
    assert reloaded.peft_config["default"].peft_type.value == "LORA"
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(plain, expected, atol=1e-3)  # the adapter changes the model


def test_an_encoder_adapter_reloads_with_its_head(tiny_bert_dir, tmp_path):
    trained = lora_backbone(tiny_bert_dir)
    _perturb(trained)
    trained.save_adapter(tmp_path / "adapter")
    fresh = lora_backbone(tiny_bert_dir, seed=7)
    fresh.load_adapter(tmp_path / "adapter")
    for name, value in trained.trainable_state_dict().items():
        assert torch.equal(fresh.trainable_state_dict()[name], value), name


def test_the_seed_alone_fixes_the_initial_adapter(tiny_t5_dir):
    torch.manual_seed(123)
    first = lora_backbone(tiny_t5_dir).trainable_state_dict()
    torch.manual_seed(456)
    again = lora_backbone(tiny_t5_dir).trainable_state_dict()
    other = lora_backbone(tiny_t5_dir, seed=1).trainable_state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_targets_that_match_nothing_are_one_line(tiny_t5_dir, tiny_bert_dir):
    with pytest.raises(DptuneError) as err:
        lora_backbone(tiny_t5_dir, target_modules=["q_proj", "nope"])
    message = str(err.value)
    assert message.startswith("target_modules (train.lora.target_modules, --target-modules): ")
    assert "q_proj, nope match no module of the t5 model" in message
    assert "(its linear layers: k, lm_head, o, q, v, wi, wo)" in message and "\n" not in message
    with pytest.raises(DptuneError, match="rank: 65 exceeds the 64 dimensions of"):
        lora_backbone(tiny_bert_dir, rank=65)


def test_a_model_type_without_a_peft_default_asks_for_targets():
    from transformers import MPNetConfig

    model = AutoModel.from_config(
        MPNetConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32)
    )  # fmt: skip
    with pytest.raises(DptuneError, match=r"PEFT has no default for mpnet models; name the linear"):
        add_lora(LoraMethodConfig(), model, kind="encoder", seed=0)
    adapted = add_lora(LoraMethodConfig(target_modules=["q", "v"]), model, kind="encoder", seed=0)
    assert adapted.get_nb_trainable_parameters()[0] == 2 * 8 * 32


def test_the_config_checks_its_fields():
    assert LoraMethodConfig().model_dump() == {
        "rank": 8, "alpha": 32.0, "dropout": 0.1, "target_modules": None,
    }  # fmt: skip
    assert LoraMethodConfig(target_modules="q, v").target_modules == ["q", "v"]
    assert LoraMethodConfig(target_modules=["q,k", "v"]).target_modules == ["q", "k", "v"]
    for bad in ({"rank": 0}, {"alpha": 0}, {"dropout": 1.0}, {"target_modules": []},
                {"target_modules": "q,,v"}):  # fmt: skip
        with pytest.raises(ValidationError):
            LoraMethodConfig(**bad)


def test_the_spec_adapts_the_model_at_a_lora_learning_rate():
    spec = get_method("lora")
    assert not spec.has_prompt and not spec.trains_backbone and spec.grid
    assert spec.adapter_function() is add_lora and spec.lr == 5e-4
    values = {"task": "cb", "method": "lora", "model": "t5-base", "out": "x", "data_dir": "x"}
    assert make_config(values).learning_rate == 5e-4


def test_a_profile_sets_lora_fields_in_its_own_block():
    from dptune.stages.params import load_profile
    from helpers.paths import REPO_ROOT

    profile = load_profile(REPO_ROOT / "profiles" / "smoke-llm.yaml")
    assert "lora" in profile.methods
    fields = profile.fields_for("cb", "lora")
    assert fields["rank"] == 2 and "bottleneck" not in fields
    cfg = make_config({**fields, "task": "cb", "method": "lora", "model": "m", "out": "o",
                       "data_dir": "d", "target_modules": ["q_proj", "v_proj"]})  # fmt: skip
    assert cfg.method_config == LoraMethodConfig(rank=2, target_modules=["q_proj", "v_proj"])
