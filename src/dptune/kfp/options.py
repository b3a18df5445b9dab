"""How the pipeline is deployed: image, parallelism, resources, retries, secret, workspace.

KFP fixes these in the compiled YAML, so they are compile-time options, not pipeline
parameters. This module imports no kfp, so the CLI can show the defaults cheaply.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dptune import __version__
from dptune.errors import DptuneError

if TYPE_CHECKING:
    from kfp import dsl

IMAGE_REPOSITORY = "ghcr.io/dptune/dptune"
IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"


@dataclass(frozen=True)
class Resources:
    cpu: str
    memory: str


@dataclass(frozen=True)
class PipelineOptions:
    """Deployment settings of the compiled pipeline."""

    image: str = IMAGE
    parallelism: int = 4  # grid cells training at once (0: no limit)
    accelerator: str = "nvidia.com/gpu"
    gpus: int = 1
    gpu_toleration: bool = True  # tolerate the usual `nvidia.com/gpu` taint of GPU node pools
    train_resources: Resources = field(default_factory=lambda: Resources("4", "16Gi"))
    step_resources: Resources = field(default_factory=lambda: Resources("1", "4Gi"))
    retries: int = 3  # a preempted train task is retried and resumes from its checkpoint
    retry_backoff: str = "60s"
    mlflow_secret: str | None = "dptune-mlflow"
    workspace_size: str | None = "20Gi"  # per-run PVC holding run folders while they train
    workspace_storage_class: str | None = None
    workspace_access_mode: str = "ReadWriteMany"  # parallel train pods on different nodes
    data_pvc: str | None = None  # a PVC holding raw SuperGLUE, mounted read-only for prepare
    data_mount: str = "/mnt/superglue"

    def __post_init__(self) -> None:
        for name in ("parallelism", "retries", "gpus"):
            if getattr(self, name) < 0:
                raise DptuneError(f"{name}: {getattr(self, name)} must be >= 0")

    def replace(self, **changes: Any) -> PipelineOptions:
        return dataclasses.replace(self, **changes)

    def pipeline_config(self) -> dsl.PipelineConfig | None:
        """The KFP workspace (a PVC per run, shared by its tasks), if one is wanted."""
        from kfp import dsl

        if not self.workspace_size:
            return None
        patch: dict[str, Any] = {"accessModes": [self.workspace_access_mode]}
        if self.workspace_storage_class:
            patch["storageClassName"] = self.workspace_storage_class
        try:
            workspace = dsl.WorkspaceConfig(
                size=self.workspace_size,
                kubernetes=dsl.KubernetesWorkspaceConfig(pvcSpecPatch=patch),
            )
        except ValueError as err:
            raise DptuneError(f"workspace size: {err}") from None
        return dsl.PipelineConfig(workspace=workspace)


# kfp.local: no Kubernetes secret (MLflow comes from the environment), no taints, and no
# retries (a local failure is not a preemption; retrying it only repeats it).
LOCAL_OPTIONS = PipelineOptions(mlflow_secret=None, gpu_toleration=False, retries=0)
