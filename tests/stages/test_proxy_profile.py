"""profiles/proxy.yaml: the real-weights stand-in (MPNet-base) resolves to the paper's prompt
sizes and stays within its two-hour budget's shape."""

from __future__ import annotations

from stage_helpers import REPO_ROOT, cell_config

from dptune.prompts.build import build_prompt
from dptune.stages.params import load_profile

PROXY = REPO_ROOT / "profiles" / "proxy.yaml"
# c = 100, e = 768: DPT c*b + b*e, PT c*e, Residual c*e + the MLP (768 -> 400 -> 768, layer norm)
PAPER_SIZES = {"dpt": 8_680, "pt": 76_800, "residual": 693_904}


def test_the_proxy_grid_is_mpnet_with_the_papers_methods_and_baselines():
    params = load_profile(PROXY)
    assert params.model == "all-mpnet-base-v2"
    assert list(params.methods) == ["dpt", "pt", "residual"] and list(params.seeds) == [0, 1, 2]
    assert set(params.report.baselines) == {"majority", "head-only"}


def test_each_cell_has_the_papers_prompt_size_on_e_768(tmp_path):
    import torch

    params = load_profile(PROXY)
    embedding = torch.nn.Embedding(30527, 768)  # MPNet-base's vocabulary and width
    for method, size in PAPER_SIZES.items():
        cfg = cell_config(
            params, task="cb", method=method, seed=0, model=params.model,
            data_dir=tmp_path, out=tmp_path / method,
        )  # fmt: skip
        assert (cfg.prompt_length, cfg.format, cfg.checkpoint_every) == (100, "natural", 4)
        prompt = build_prompt(
            cfg.method, cfg.method_config, num_tokens=cfg.prompt_length, embedding=embedding,
            special_ids=[0, 1, 2], generator=torch.Generator().manual_seed(cfg.seed),
        )  # fmt: skip
        assert sum(p.numel() for p in prompt.parameters() if p.requires_grad) == size, method


PROXY_LATER = REPO_ROOT / "profiles" / "proxy-later.yaml"
# c = 100, e = 768, s = 160: ULPT c r + 2 e (r = 2), DePT m e + s r + r e (m = c, r = 30),
# LoRA 12 layers x (q, v) x r (768 + 768) at r = 8
LATER_SIZES = {"ulpt": 1_736, "dept": 104_640, "lora": 294_912}


def test_the_later_proxy_has_the_same_setting_and_the_formulas_counts(tmp_path):
    import torch
    from transformers import AutoModel, MPNetConfig

    from dptune.prompts.lora.adapter import add_lora

    params, paper = load_profile(PROXY_LATER), load_profile(PROXY)
    assert params.model == paper.model and params.seeds == paper.seeds
    assert params.report.baselines == paper.report.baselines and list(params.methods) == list(
        LATER_SIZES
    )
    embedding = torch.nn.Embedding(30527, 768)
    for method, size in LATER_SIZES.items():
        kwargs = {"task": "cb", "seed": 0, "model": params.model, "data_dir": tmp_path}
        cfg = cell_config(params, method=method, out=tmp_path / method, **kwargs)
        shared = cell_config(paper, method="dpt", out=tmp_path / "dpt", **kwargs)
        for field in ("prompt_length", "epochs", "batch_size", "train_limit", "max_source_length",
                      "format", "decode"):  # fmt: skip
            assert getattr(cfg, field) == getattr(shared, field), (method, field)
        if method == "lora":
            with torch.device("meta"):
                model = AutoModel.from_config(MPNetConfig(hidden_size=768, num_hidden_layers=12))
            adapted = add_lora(cfg.method_config, model, kind="encoder", seed=0)
            assert adapted.get_nb_trainable_parameters()[0] == size
            continue
        prompt = build_prompt(
            cfg.method, cfg.method_config, num_tokens=cfg.prompt_length, embedding=embedding,
            special_ids=[0, 1, 2], generator=torch.Generator().manual_seed(0),
            source_length=cfg.max_source_length,
        )  # fmt: skip
        assert sum(p.numel() for p in prompt.parameters() if p.requires_grad) == size, method
