from __future__ import annotations

from dptune.prompts.pt.config import PromptInit, pt_init_field
from dptune.prompts.registry import MethodConfig


class ProbeConfig(MethodConfig):
    """The rank probe: P^T = U ReLU(Sigma) V, started from the SVD of a `pt` prompt."""

    pt_init: PromptInit = pt_init_field()  # the prompt whose SVD gives the starting U, Sigma, V
