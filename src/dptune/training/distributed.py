"""Data parallelism under torchrun: which rank this process is, and the few collectives the
trainer needs.

torchrun (or any launcher that sets WORLD_SIZE, RANK, LOCAL_RANK and LOCAL_WORLD_SIZE) starts
one process per device. Every rank builds the same frozen backbone and the same epoch order
(`epoch_batches`, seeded), and takes a contiguous slice of each global batch; the loss of a
slice is divided by the global batch's target count, so the sum of the ranks' gradients is the
single-process gradient. One all-reduce per step carries those gradients, the summed loss and
the stop flags (a signal received by any rank), so every rank steps, logs and stops together.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import signal
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from dptune.errors import DptuneError

# How long a rank waits in a collective for the others: a rank that hangs (rather than dies,
# which its peers see at once) ends the run after this. torchrun's agent also stops every rank
# as soon as one exits with an error.
TIMEOUT_S = 300
_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


class RankLost(DptuneError):
    """A collective failed: another rank died or stopped answering."""


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    """A failed collective (a peer that died closes its connections; one that hangs runs into
    TIMEOUT_S) is one line, not a traceback from the backend."""
    try:
        yield
    except RuntimeError as err:  # torch.distributed.DistBackendError among them
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        first = re.sub(r"^\[[^]]*\]\s*", "", text)[:120]  # gloo's "[source.cc:537] " prefix
        raise RankLost(
            f"processes: another rank stopped during {what} ({first}); continue the run with "
            "--resume from its last checkpoint"
        ) from None


@dataclass(frozen=True)
class Ranks:
    world: int = 1  # processes in the run
    rank: int = 0
    local_rank: int = 0  # rank on this node: its GPU is cuda:<local_rank>
    local_world: int = 1  # processes on this node

    @property
    def main(self) -> bool:
        """The rank that locks the run folder and writes it."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def ranks_from_env(env: Mapping[str, str] | None = None) -> Ranks:
    """The launcher's ranks (torchrun's variables); a single process when WORLD_SIZE is unset."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return Ranks()
    values: dict[str, int] = {}
    for name in _ENV:
        raw = env.get(name, "1" if name == "LOCAL_WORLD_SIZE" else "0")
        try:
            values[name] = int(raw)
        except ValueError:
            raise DptuneError(f"{name}: {raw!r} is not a whole number") from None
    ranks = Ranks(
        values["WORLD_SIZE"], values["RANK"], values["LOCAL_RANK"], values["LOCAL_WORLD_SIZE"]
    )
    if ranks.world < 1 or not 0 <= ranks.rank < ranks.world:
        raise DptuneError(f"RANK: {ranks.rank} is not a rank of WORLD_SIZE {ranks.world}")
    return ranks


def check_batch_size(batch_size: int, world: int) -> None:
    """A global batch is split evenly across the ranks; one that does not divide is refused."""
    if world > 1 and batch_size % world:
        raise DptuneError(
            f"batch_size: {batch_size} does not divide by the {world} processes; "
            f"choose a multiple of {world}"
        )


def check_gpus(local_world: int) -> None:
    """One GPU per local rank."""
    count = torch.cuda.device_count()
    if local_world > count:
        raise DptuneError(
            f"processes: {local_world} ranks on this node need {local_world} GPUs, it has {count}"
        )


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """Each rank's own GPU (cuda:LOCAL_RANK); the CPU as it is."""
    if ranks.active and device.type == "cuda":
        check_gpus(ranks.local_world)
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    return device


@contextlib.contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """Join the process group for the block (gloo on the CPU, nccl on CUDA)."""
    if not ranks.active or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=TIMEOUT_S)
    try:
        dist.init_process_group(backend, timeout=timeout)
    except (RuntimeError, ValueError) as err:
        raise DptuneError(f"WORLD_SIZE: cannot join the {ranks.world} processes ({err})") from None
    try:
        yield
    finally:
        with contextlib.suppress(RuntimeError, ValueError):
            dist.destroy_process_group()


def my_slice(items: Sequence[Any], ranks: Ranks) -> list[Any]:
    """This rank's contiguous share of `items` (as `numpy.array_split`: the first
    `len % world` ranks take one more; a short last batch may leave a rank none)."""
    per, extra = divmod(len(items), ranks.world)
    start = ranks.rank * per + min(ranks.rank, extra)
    return list(items[start : start + per + (ranks.rank < extra)])


def broadcast_params(params: Sequence[torch.Tensor]) -> None:
    """Every rank starts from rank 0's trainable weights."""
    with torch.no_grad(), _collective("start-up"):
        for param in params:
            dist.broadcast(param.data, src=0)


def reduce_step(
    params: Sequence[torch.nn.Parameter], loss: torch.Tensor, requested: int | None
) -> tuple[float, int | None]:
    """Sum the ranks' gradients (in place), losses and stop requests in one all-reduce; the
    global loss and the signal to stop on (SIGTERM before SIGINT), or None.

    A parameter without a gradient on every rank keeps none (AdamW then skips it, as alone)."""
    ref = loss.detach().float().reshape(1)
    parts: list[torch.Tensor] = []
    for param in params:
        grad = param.grad
        parts.append(ref.new_zeros(param.numel()) if grad is None else grad.float().reshape(-1))
    has_grad = [float(p.grad is not None) for p in params]
    flags = [float(requested == signal.SIGINT), float(requested == signal.SIGTERM)]
    parts.append(torch.tensor(has_grad + flags, device=ref.device))
    parts.append(ref)
    flat = torch.cat(parts)
    with _collective("a training step"):
        dist.all_reduce(flat)
    offset = 0
    for param, present in zip(params, flat[-len(params) - 3 : -3].tolist(), strict=True):
        size = param.numel()
        if present:
            reduced = flat[offset : offset + size].view_as(param).to(param.dtype)
            if param.grad is None:
                param.grad = reduced.clone()
            else:
                param.grad.copy_(reduced)
        else:
            param.grad = None
        offset += size
    sigint, sigterm, total = flat[-3:].tolist()
    stop = signal.SIGTERM if sigterm else (signal.SIGINT if sigint else None)
    return total, None if stop is None else int(stop)


def agree_stop(requested: int | None) -> int | None:
    """The signal any rank received (SIGTERM before SIGINT), or None: every rank agrees."""
    flags = torch.tensor([float(requested == signal.SIGINT), float(requested == signal.SIGTERM)])
    if dist.get_backend() == "nccl":
        flags = flags.cuda()
    with _collective("the end of an epoch"):
        dist.all_reduce(flags)
    sigint, sigterm = flags.tolist()
    stop = signal.SIGTERM if sigterm else (signal.SIGINT if sigint else None)
    return None if stop is None else int(stop)


def gather(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order (picklable objects: RNG states, predictions)."""
    values: list[Any] = [None] * dist.get_world_size()
    with _collective("a gather (evaluation or checkpoint)"):
        dist.all_gather_object(values, value)
    return values


def from_main(value: Any) -> Any:
    """Rank 0's `value` on every rank."""
    box = [value]
    with _collective("a broadcast from rank 0"):
        dist.broadcast_object_list(box, src=0)
    return box[0]
