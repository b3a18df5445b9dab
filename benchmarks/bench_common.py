"""Pieces both sides of the throughput benchmarks share: peak memory, the method's own fields,
the PEFT DPT encoder."""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

ADAPTER = "default"


def run_worker(
    script: str | Path, role: str, spec: dict[str, Any], env: dict[str, str]
) -> dict[str, Any]:
    """`script --worker role --spec JSON` in a fresh process; the last line it prints, parsed."""
    cmd = [sys.executable, str(script), "--worker", role, "--spec", json.dumps(spec)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{spec['case']} {role} worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_memory_mb(device: str) -> float:
    """The process's peak: RSS on CPU (imports included), allocated tensor memory on CUDA."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def own_fields(method: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Those of `values` that are hyperparameters of `method` (the method registry's), for its
    TrainConfig; a config refuses another method's."""
    from dptune.prompts.registry import get_method

    owned = get_method(method).fields
    return {name: value for name, value in values.items() if name in owned}


def limit_like_dptune(examples: Sequence[Any], limit: int | None, seed: int) -> list[Any]:
    """At most `limit` of `examples`, the ones dptune's `train_limit` keeps for `seed`."""
    if not limit or len(examples) <= limit:
        return list(examples)
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


class _ComputedWeight:
    """Where PEFT reads `prompt_encoder.embedding.weight`: P = A @ B, computed now."""

    def __init__(self, owner: LowRankPromptEncoder) -> None:
        self._owner = owner

    @property
    def weight(self) -> torch.Tensor:
        return self._owner.prompt()


class LowRankPromptEncoder(nn.Module):
    """PEFT prompt encoder for DPT: forward(indices) -> rows of A @ B (SPEC §6).

    A (c x b) and B (b x e) start from Uniform(-0.5, 0.5), as dptune's `dpt` does.
    """

    def __init__(self, num_tokens: int, bottleneck: int, dim: int) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.empty(num_tokens, bottleneck).uniform_(-0.5, 0.5))
        self.B = nn.Parameter(torch.empty(bottleneck, dim).uniform_(-0.5, 0.5))
        self.embedding = _ComputedWeight(self)

    def prompt(self) -> torch.Tensor:
        return self.A @ self.B

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return self.prompt()[indices]


def install_dpt_prompt(peft_model: nn.Module, num_tokens: int, bottleneck: int, dim: int) -> None:
    """Replace PEFT's prompt embedding by DPT's low-rank encoder (the prompt-encoder hook)."""
    peft_model.prompt_encoder[ADAPTER] = LowRankPromptEncoder(num_tokens, bottleneck, dim)
