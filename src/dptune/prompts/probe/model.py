from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from dptune.prompts.base import PromptModule
from dptune.prompts.init import initial_prompt
from dptune.prompts.probe.config import ProbeConfig

# Singular values start at least this large, so that ReLU(Sigma) passes gradient to every entry.
MIN_INITIAL_SIGMA = 1e-3


class SvdProbePrompt(PromptModule):
    """P = (U ReLU(Sigma) V)^T with U (e x e), Sigma (e x c, rectangular diagonal), V (c x c).

    Trainable: U, V and the k = min(c, e) diagonal entries of Sigma, e^2 + k + c^2 parameters.
    The factors start as the full SVD of a `pt`-style prompt (vocabulary rows or random), so the
    probe begins where prompt tuning begins with every diagonal entry positive. Entries that turn
    negative are cut by the ReLU: counting them shows how low-rank the trained prompt wants to be.
    """

    def __init__(
        self,
        config: ProbeConfig,
        *,
        num_tokens: int,
        dim: int,
        embedding: nn.Embedding | None = None,
        special_ids: Collection[int] = (),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.num_tokens, self.dim = num_tokens, dim
        start, self.init_token_ids = initial_prompt(
            config.pt_init, num_tokens, dim, embedding, special_ids, generator
        )
        self.init_source = config.pt_init
        u, s, vh = torch.linalg.svd(start.T.double(), full_matrices=True)  # [e,e], [k], [c,c]
        self.U = nn.Parameter(u.float())
        self.sigma = nn.Parameter(s.float().clamp_min(MIN_INITIAL_SIGMA))
        self.V = nn.Parameter(vh.float())

    def forward(self) -> torch.Tensor:
        k = self.sigma.numel()
        # U ReLU(Sigma) V with the rectangular diagonal applied as a column scaling of U[:, :k].
        transposed = (self.U[:, :k] * torch.relu(self.sigma)) @ self.V[:k, :]  # [e, c]
        return transposed.T

    @torch.no_grad()
    def log_stats(self) -> dict[str, float]:
        return {
            "sigma_pos": float((self.sigma > 0).sum()),
            "sigma_neg": float((self.sigma < 0).sum()),
            "rank": float(torch.linalg.matrix_rank(self.forward().float())),
        }
