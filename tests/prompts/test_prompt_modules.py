"""Behaviour of each prompt parameterisation: shapes, ranks, initialisation, statistics."""

from __future__ import annotations

import pytest
import torch
from prompt_helpers import PromptSpec, build_prompt, spec
from torch import nn

from dptune.prompts.dpt.model import DecomposedPrompt
from dptune.prompts.init import VOCAB_INIT_RANGE
from dptune.prompts.probe.model import SvdProbePrompt
from dptune.prompts.pt.model import FreePrompt
from dptune.prompts.residual.model import ResidualPrompt

DIM = 48


def cfg(method: str, **overrides: object) -> PromptSpec:
    return spec(method, **{"prompt_length": 30, **overrides})


@pytest.fixture
def embedding() -> nn.Embedding:
    torch.manual_seed(0)
    return nn.Embedding(6000, DIM)


def test_dpt_is_a_product_of_rank_at_most_b(embedding: nn.Embedding) -> None:
    prompt = build_prompt(cfg("dpt", bottleneck=3), embedding, DIM)
    assert isinstance(prompt, DecomposedPrompt)
    matrix = prompt()
    assert matrix.shape == (30, DIM)
    torch.testing.assert_close(matrix, prompt.A @ prompt.B)
    assert torch.linalg.matrix_rank(matrix) <= 3
    assert set(prompt.trainable_state()) == {"A", "B"}


def test_dpt_uniform_and_normal_inits(embedding: nn.Embedding) -> None:
    uniform = build_prompt(cfg("dpt", bottleneck=50, prompt_length=100), embedding, DIM)
    factors = torch.cat([uniform.A.flatten(), uniform.B.flatten()])
    assert factors.min() >= -0.5 and factors.max() <= 0.5 and factors.std() > 0.25
    normal = build_prompt(
        cfg("dpt", bottleneck=50, prompt_length=100, init="normal", init_std=0.02), embedding, DIM
    )
    std = torch.cat([normal.A.flatten(), normal.B.flatten()]).std()
    assert 0.015 < std < 0.025


@pytest.mark.parametrize("method", ["dpt", "pt", "residual", "probe"])
def test_init_is_a_function_of_the_seed(method: str, embedding: nn.Embedding) -> None:
    first = build_prompt(cfg(method, seed=1), embedding, DIM)
    torch.manual_seed(123)  # the global RNG does not matter
    again = build_prompt(cfg(method, seed=1), embedding, DIM)
    other = build_prompt(cfg(method, seed=2), embedding, DIM)
    torch.testing.assert_close(first(), again())
    assert not torch.allclose(first(), other())


def test_pt_vocab_init_copies_ordinary_rows_below_5000(embedding: nn.Embedding) -> None:
    special = {0, 1, 2, 7}
    prompt = build_prompt(cfg("pt", prompt_length=200), embedding, DIM, special_ids=special)
    assert isinstance(prompt, FreePrompt) and prompt.init_source == "vocab"
    ids = prompt.init_token_ids
    assert len(ids) == 200 and len(set(ids)) == 200
    assert all(i < VOCAB_INIT_RANGE and i not in special for i in ids)
    torch.testing.assert_close(prompt(), embedding.weight[ids].detach())


def test_pt_random_init_records_it(embedding: nn.Embedding) -> None:
    prompt = build_prompt(cfg("pt", pt_init="random"), embedding, DIM)
    assert prompt.init_source == "random" and prompt.init_token_ids == []
    assert prompt().abs().max() <= 0.5


def test_vocab_init_repeats_ids_only_when_the_vocabulary_is_too_small() -> None:
    small = nn.Embedding(10, DIM)
    prompt = build_prompt(cfg("pt", prompt_length=30), small, DIM, special_ids={0})
    assert set(prompt.init_token_ids) <= set(range(1, 10))


def test_residual_is_layernormed_shared_mlp_plus_skip(embedding: nn.Embedding) -> None:
    prompt = build_prompt(cfg("residual", residual_hidden=16), embedding, DIM)
    assert isinstance(prompt, ResidualPrompt)
    first, act, second = prompt.mlp
    assert (first.in_features, first.out_features) == (DIM, 16)
    assert isinstance(act, nn.ReLU)
    assert (second.in_features, second.out_features) == (16, DIM)
    x = prompt.weight
    expected = (
        nn.functional.layer_norm(
            second(torch.relu(first(x))), (DIM,), prompt.norm.weight, prompt.norm.bias
        )
        + x
    )
    torch.testing.assert_close(prompt(), expected)
    # one MLP for all tokens: each output row depends only on its own input row
    with torch.no_grad():
        x[3] += 1.0
    changed = (prompt() - expected).abs().sum(dim=1) > 0
    assert changed.tolist() == [i == 3 for i in range(30)]


@pytest.mark.parametrize(("c", "e"), [(30, DIM), (60, 20)])
def test_probe_starts_at_the_pt_prompt_and_reports_stats(c: int, e: int) -> None:
    embedding = nn.Embedding(6000, e)
    probe = build_prompt(cfg("probe", prompt_length=c), embedding, e)
    pt = build_prompt(cfg("pt", prompt_length=c), embedding, e)
    assert isinstance(probe, SvdProbePrompt)
    assert probe.U.shape == (e, e) and probe.V.shape == (c, c) and probe.sigma.shape == (min(c, e),)
    torch.testing.assert_close(probe(), pt(), atol=1e-4, rtol=1e-4)
    assert (probe.sigma > 0).all()
    assert probe.log_stats() == {"sigma_pos": min(c, e), "sigma_neg": 0, "rank": min(c, e)}


def test_probe_negative_sigma_is_cut_and_lowers_the_rank(embedding: nn.Embedding) -> None:
    probe = build_prompt(cfg("probe"), embedding, DIM)
    with torch.no_grad():
        probe.sigma[:12] = -1.0
    stats = probe.log_stats()
    assert stats == {"sigma_pos": 18.0, "sigma_neg": 12.0, "rank": 18.0}


def test_probe_trains_u_sigma_and_v(embedding: nn.Embedding) -> None:
    probe = build_prompt(cfg("probe"), embedding, DIM)
    probe().square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in probe.parameters())
