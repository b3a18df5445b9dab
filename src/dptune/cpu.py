"""How many CPU threads torch may use: the affinity mask, capped by the container's CPU quota."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")  # this process's cgroup in each hierarchy


def _own_cgroups(proc: Path) -> dict[str, str]:
    """Controller -> this process's cgroup path: "" for cgroup v2 (`0::/a/b`), each listed
    controller for v1 (`4:cpu,cpuacct:/a/b`)."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return {}
    own: dict[str, str] = {}
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        for controller in controllers.split(",") if controllers else [""]:
            own[controller] = path
    return own


def _upwards(base: Path, inner: str) -> list[Path]:
    """`base/inner` and every folder above it up to `base`: a quota on a parent caps us too. In
    a container `base` itself is often the container's own cgroup, mounted there."""
    parts = [p for p in inner.split("/") if p and p != ".."]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _quota_in(folder: Path) -> float | None:
    """CPUs of one cgroup folder: v2 `cpu.max` ("150000 100000" is 1.5), else v1's CFS quota."""
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (folder / "cpu.cfs_quota_us").read_text().strip()
            period = (folder / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        cpus = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):  # "max", or a format we do not know
        return None
    return cpus if cpus > 0 else None  # v1 writes -1 for no quota


def cpu_quota(root: Path | None = None, proc: Path | None = None) -> float | None:
    """The CPUs this process's cgroups allow (`--cpus`, a Kubernetes CPU limit), the smallest
    quota on its cgroup or any above it, v2 or v1; None when none is set."""
    root = root or CGROUP_ROOT
    own = _own_cgroups(proc or PROC_CGROUP)
    folders = _upwards(root, own.get("", "")) + _upwards(root / "cpu", own.get("cpu", ""))
    quotas = [q for folder in folders if (q := _quota_in(folder)) is not None]
    return min(quotas) if quotas else None


def cpu_budget(root: Path | None = None, proc: Path | None = None) -> int:
    """The CPUs this process may use: its affinity mask, capped by the cgroup's quota."""
    cpus = len(os.sched_getaffinity(0))
    quota = cpu_quota(root, proc)
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def limit_threads(root: Path | None = None, proc: Path | None = None) -> int:
    """Cap torch's CPU threads at `cpu_budget()`; return the count in use.

    torch starts a thread per CPU of the affinity mask and ignores the cgroup quota, so in a
    container limited to 4 of a node's 64 CPUs it runs 64 threads that the quota throttles (on
    a busy shared 2-CPU machine, 2 threads against 1 made a tiny T5 step 13x slower).
    `OMP_NUM_THREADS`, when set, is the user's choice and is left alone.
    """
    if not os.environ.get("OMP_NUM_THREADS"):
        # Data-parallel ranks on one node (torchrun's LOCAL_WORLD_SIZE) share its CPUs.
        local = os.environ.get("LOCAL_WORLD_SIZE", "1")
        budget = max(1, cpu_budget(root, proc) // max(1, int(local) if local.isdigit() else 1))
        if torch.get_num_threads() > budget:
            torch.set_num_threads(budget)
    return torch.get_num_threads()
