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
