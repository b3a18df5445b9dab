"""torch's thread count follows the container's CPU quota (cgroup v2 and v1 files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dptune.cpu import cpu_budget, cpu_quota, limit_threads

CPUS = len(os.sched_getaffinity(0))


def _v2(tmp_path: Path, text: str) -> Path:
    (tmp_path / "cpu.max").write_text(text)
    return tmp_path


def _v1(tmp_path: Path, quota: str, inner: str = "") -> Path:
    folder = tmp_path / "cpu" / inner
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cpu.cfs_quota_us").write_text(quota + "\n")
    (folder / "cpu.cfs_period_us").write_text("100000\n")
    return tmp_path


def _proc(tmp_path: Path, text: str) -> Path:
    (tmp_path / "proc-cgroup").write_text(text)
    return tmp_path / "proc-cgroup"


@pytest.fixture
def restore_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("150000 100000\n", 1.5), ("max 100000\n", None), ("50000 100000", 0.5), ("", None),
     ("garbage", None), ("0 100000", None)],
)  # fmt: skip
def test_cgroup_v2_quota(tmp_path: Path, text: str, cpus: float | None) -> None:
    assert cpu_quota(_v2(tmp_path, text)) == cpus


@pytest.mark.parametrize(("quota", "cpus"), [("200000", 2.0), ("-1", None), ("x", None)])
def test_cgroup_v1_quota(tmp_path: Path, quota: str, cpus: float | None) -> None:
    assert cpu_quota(_v1(tmp_path, quota)) == cpus


def test_the_smallest_quota_on_the_process_cgroup_or_above_it_wins(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "12:pids:/x\n4:cpu,cpuacct:/kubepods/pod1/c1\n0::/\n")
    _v1(tmp_path, "-1")
    _v1(tmp_path, "300000", "kubepods/pod1")  # the pod's limit, on the parent folder
    _v1(tmp_path, "-1", "kubepods/pod1/c1")
    assert cpu_quota(tmp_path, proc) == 3.0
    _v1(tmp_path, "150000", "kubepods/pod1/c1")
    assert cpu_quota(tmp_path, proc) == 1.5


def test_a_v2_cgroup_path_is_followed(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "0::/system.slice/job.scope\n")
    (tmp_path / "system.slice" / "job.scope").mkdir(parents=True)
    (tmp_path / "system.slice" / "job.scope" / "cpu.max").write_text("100000 100000\n")
    assert cpu_quota(tmp_path, proc) == 1.0
    assert cpu_quota(tmp_path, _proc(tmp_path, "0::/../../etc\n")) is None


def test_no_cgroup_files_means_no_quota(tmp_path: Path) -> None:
    assert cpu_quota(tmp_path) is None
    assert cpu_budget(tmp_path) == CPUS


def test_the_budget_rounds_a_fraction_up_and_never_exceeds_the_affinity(tmp_path: Path) -> None:
    assert cpu_budget(_v2(tmp_path, "50000 100000")) == 1
    (tmp_path / "cpu.max").write_text(f"{(CPUS + 8) * 100000} 100000")
    assert cpu_budget(tmp_path) == CPUS


def test_threads_are_capped_at_the_quota(tmp_path: Path, restore_threads) -> None:
    torch.set_num_threads(CPUS)
    assert limit_threads(_v2(tmp_path, "100000 100000")) == 1 == torch.get_num_threads()


def test_local_ranks_share_the_quota(tmp_path: Path, restore_threads, monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    budget = min(CPUS, 8)
    torch.set_num_threads(budget)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: two ranks on this node
    half = limit_threads(_v2(tmp_path, "800000 100000"))
    assert half == max(1, budget // 2) == torch.get_num_threads()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")  # more ranks than CPUs: one each
    assert limit_threads(_v2(tmp_path, "800000 100000")) == 1


def test_omp_num_threads_is_the_users_choice(tmp_path: Path, restore_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", str(CPUS))
    torch.set_num_threads(CPUS)
    assert limit_threads(_v2(tmp_path, "100000 100000")) == CPUS


def test_building_a_backbone_applies_the_quota(
    tmp_path: Path, tiny_t5_dir: Path, restore_threads, monkeypatch
) -> None:
    from dptune import cpu
    from dptune.backbones.loader import build_backbone
    from dptune.config import TrainConfig

    monkeypatch.setattr(cpu, "CGROUP_ROOT", _v2(tmp_path, "100000 100000"))
    torch.set_num_threads(CPUS)
    cfg = TrainConfig(task="cb", model=str(tiny_t5_dir), data_dir="d", out="o", prompt_length=4)
    build_backbone(cfg)
    assert torch.get_num_threads() == 1


V1_CPU = Path("/sys/fs/cgroup/cpu")


@pytest.mark.skipif(
    not os.access(V1_CPU, os.W_OK) or not (V1_CPU / "cpu.cfs_quota_us").exists(),
    reason="needs a writable cgroup v1 cpu hierarchy (root on this project's machines)",
)
def test_a_real_cgroup_quota_caps_a_fresh_process(tmp_path: Path) -> None:
    """A real kernel quota of one CPU: a process started in that cgroup runs torch on 1 thread."""
    import subprocess
    import sys
    import uuid

    group = V1_CPU / f"dptune-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("100000")
        code = "from dptune.cpu import limit_threads; print(limit_threads())"
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        out = subprocess.run(
            ["sh", "-c", f'echo $$ > {group}/tasks && exec "$0" -c "$1"', sys.executable, code],
            env=env, capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        assert out.stdout.strip() == "1", out
    finally:
        group.rmdir()
