"""`shard: full`: FSDP2 (`fully_shard`) spreads the frozen backbone's weights over the ranks, for
a backbone larger than one GPU; the prompt (every trainable tensor) stays whole on each rank
and is all-reduced as in plain data parallelism (`distributed.reduce_step`).

Each transformer block (the model's `_no_split_modules`) is a unit of its own, gathered for its
forward and freed after; the outer unit is the backbone itself, the module that embeds the
input and adds the prompt (its embeddings, head and norms), with the trainable tensors left out
of sharding. Its entry points (`loss`, `rank_scores`, `generate`) are registered as forward
methods so that the outer unit gathers its weights for them. Sharding only the model inside
the backbone instead leaves the backbone mixing whole and sharded tensors, which fails.
"""

from __future__ import annotations

from dptune.backbones.base import Backbone
from dptune.errors import DptuneError

SHARD_MODES: tuple[str, ...] = ("none", "full")
FORWARD_METHODS: tuple[str, ...] = ("loss", "rank_scores", "generate")


def check_shard(mode: str, world: int, backbone: Backbone | None = None) -> None:
    """`shard: full` needs several ranks, and a frozen backbone (a prompt method)."""
    if mode == "none":
        return
    if world < 2:
        raise DptuneError(
            "shard: full shards the backbone over several processes; run under torchrun "
            "or with --processes N (N > 1), or use --shard none"
        )
    if backbone is not None and (backbone.prompt is None or backbone.adapter is not None):
        raise DptuneError(
            "shard: full needs a frozen backbone (a prompt method); finetune and lora train "
            "the model's own weights: use --shard none"
        )


def shard_backbone(backbone: Backbone) -> str:
    """Shard `backbone`'s frozen weights over the process group (in place); a line saying
    what this rank now holds."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method
    from torch.distributed.tensor import DTensor

    # Embedding modules (BERT lists BertEmbeddings) stay in the outer unit: the backbone calls
    # their tables directly to embed the source beside the prompt.
    names = getattr(backbone.model, "_no_split_modules", None) or ()
    block_names = {name for name in names if "Embedding" not in name}
    blocks = [m for m in backbone.model.modules() if type(m).__name__ in block_names]
    if not blocks:
        raise DptuneError(
            f"shard: full: {type(backbone.model).__name__} names no transformer blocks "
            "(_no_split_modules) to shard; use --shard none"
        )
    for block in blocks:
        fully_shard(block)
    trainable = {p for p in backbone.parameters() if p.requires_grad}
    fully_shard(backbone, ignored_params=trainable)
    for name in FORWARD_METHODS:
        if hasattr(backbone, name):
            register_fsdp_forward_method(backbone, name)
    frozen = [p for p in backbone.parameters() if not p.requires_grad]
    total = sum(p.numel() for p in frozen)
    held = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in frozen)
    return (
        f"shard: full: {len(blocks)} blocks and the outer unit sharded; this rank holds "
        f"{held:,} of the {total:,} frozen weights"
    )


def reshard(backbone: Backbone) -> None:
    """Free the gathered weights of every unit, on every rank. Rank 0's export reads the
    backbone's state dict, which reshards it there; every rank must then gather the same
    units in the forwards that follow, so all reshard first."""
    from torch.distributed.fsdp import FSDPModule

    for module in backbone.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
