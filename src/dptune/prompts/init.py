"""Seeded initialisers shared by the prompt parameterisations.

Every initialiser draws from an explicit `torch.Generator` when one is given (so a prompt is a
pure function of its seed); with `generator=None` it uses the global RNG, which the caller may
have seeded with `torch.manual_seed`.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from dptune.prompts.pt.config import PromptInit

__all__ = ["VOCAB_INIT_RANGE", "PromptInit", "initial_prompt", "linear", "normal", "uniform"]

# Lester et al. (2021) initialise prompt tokens from the 5,000 most common vocabulary entries;
# SentencePiece and WordPiece vocabularies are roughly frequency-ordered, so the first ids are.
VOCAB_INIT_RANGE = 5000


def uniform(
    shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None
) -> torch.Tensor:
    return torch.empty(shape).uniform_(low, high, generator=generator)


def normal(shape: tuple[int, ...], std: float, generator: torch.Generator | None) -> torch.Tensor:
    return torch.empty(shape).normal_(0.0, std, generator=generator)


def ordinary_token_ids(vocab_size: int, special_ids: Collection[int]) -> list[int]:
    """Ids below VOCAB_INIT_RANGE that are not special tokens."""
    special = set(special_ids)
    return [i for i in range(min(vocab_size, VOCAB_INIT_RANGE)) if i not in special]


def sample_vocab_rows(
    embedding: nn.Embedding,
    num_tokens: int,
    special_ids: Collection[int],
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, list[int]]:
    """`num_tokens` rows of the embedding at distinct ordinary ids (repeats only if too few)."""
    candidates = ordinary_token_ids(embedding.num_embeddings, special_ids)
    if not candidates:
        raise ValueError("the vocabulary has no ordinary token ids to initialise a prompt from")
    if num_tokens <= len(candidates):
        picks = torch.randperm(len(candidates), generator=generator)[:num_tokens]
    else:
        picks = torch.randint(len(candidates), (num_tokens,), generator=generator)
    token_ids = [candidates[i] for i in picks.tolist()]
    weight = embedding.weight.detach()
    rows = weight[torch.tensor(token_ids, device=weight.device)].to(torch.float32).clone()
    return rows, token_ids


def initial_prompt(
    init: PromptInit,
    num_tokens: int,
    dim: int,
    embedding: nn.Embedding | None,
    special_ids: Collection[int],
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, list[int]]:
    """A c x e starting prompt and the vocabulary ids it was copied from (empty if random).

    `random` draws Uniform(-0.5, 0.5), the random-uniform init of Lester et al.
    """
    if init == "random":
        return uniform((num_tokens, dim), -0.5, 0.5, generator), []
    if embedding is None:
        raise ValueError("vocab initialisation needs the model's input embedding")
    if embedding.embedding_dim != dim:
        raise ValueError(f"embedding dim {embedding.embedding_dim} differs from prompt dim {dim}")
    return sample_vocab_rows(embedding, num_tokens, special_ids, generator)


def linear(in_features: int, out_features: int, generator: torch.Generator | None) -> nn.Linear:
    """nn.Linear with PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) init, but seeded."""
    layer = nn.Linear(in_features, out_features)
    bound = in_features**-0.5
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer
