"""How the pipeline is deployed: image, parallelism, resources, retries, timeouts, secrets, the
workspace and where pods may run.

KFP fixes these in the compiled YAML, so they are compile-time options, not pipeline
parameters. This module imports no kfp, so the CLI can show the defaults cheaply.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dptune import __version__
from dptune.errors import DptuneError

if TYPE_CHECKING:
    from kfp import dsl

IMAGE_REPOSITORY = "ghcr.io/dptune/dptune"
IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"  # a placeholder: no registry serves it
ALLOW_PLACEHOLDER_FLAG = "--allow-placeholder-image"

# The oldest Kubeflow Pipelines backend that accepts the compiled pipeline: the optional MLflow
# keys compile to `secretAsEnv.optional`, a field KFP knows from 2.15 on.
MIN_BACKEND = (2, 15)
MIN_BACKEND_TEXT = ".".join(map(str, MIN_BACKEND))

ACCESS_MODES = ("ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
SINGLE_NODE_MODES = ("ReadWriteOnce", "ReadWriteOncePod")
DEFAULT_PARALLELISM = 4
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class Resources:
    cpu: str
    memory: str


def is_placeholder_image(image: str) -> bool:
    """Whether `image` is the default `ghcr.io/dptune/dptune:<tag>`, which no registry serves."""
    return image.split("@")[0].rsplit(":", 1)[0] == IMAGE_REPOSITORY


def refuse_placeholder_image(image: str, what: str) -> None:
    if is_placeholder_image(image):
        raise DptuneError(
            f"--image: {image} is a placeholder no registry serves; push the image and pass "
            f"--image <registry>/dptune:<tag> ({ALLOW_PLACEHOLDER_FLAG} to {what} anyway)"
        )


@dataclass(frozen=True)
class PipelineOptions:
    """Deployment settings of the compiled pipeline."""

    image: str = IMAGE
    # grid cells training at once (0: no limit); None: 4 on a ReadWriteMany workspace, 1 on a
    # single-node (ReadWriteOnce) one, whose volume attaches to one node at a time
    parallelism: int | None = None
    accelerator: str = "nvidia.com/gpu"
    gpus: int = 1
    gpu_toleration: bool = True  # tolerate the usual `nvidia.com/gpu` taint of GPU node pools
    gpu_node_selector: tuple[tuple[str, str], ...] = ()  # node labels train and probe pods need
    image_pull_secrets: tuple[str, ...] = ()  # for a private registry
    train_resources: Resources = field(default_factory=lambda: Resources("4", "16Gi"))
    step_resources: Resources = field(default_factory=lambda: Resources("1", "4Gi"))
    retries: int = 3  # a preempted train task is retried and resumes from its checkpoint
    retry_backoff: str = "60s"
    # activeDeadlineSeconds of each pod (0: none): a pod stuck starting (a volume that cannot
    # attach, an image that cannot be pulled) or training past it fails instead of hanging
    train_timeout_s: int = 48 * 3600
    step_timeout_s: int = 2 * 3600
    mlflow_secret: str | None = "dptune-mlflow"
    # a secret whose key HF_TOKEN becomes the backbone task's HF_TOKEN (private or gated hub
    # models); only that task downloads, every later one runs with the hub offline
    hf_token_secret: str | None = None
    # the backend's MLflow plugin (KFP 2.17+) injects MLFLOW_TRACKING_URI, MLFLOW_RUN_ID and the
    # tracking credentials: the secret then maps only the artifact-store keys
    mlflow_from_backend: bool = False
    workspace_size: str | None = "20Gi"  # per-run PVC holding run folders while they train
    workspace_storage_class: str | None = None
    workspace_access_mode: str = "ReadWriteMany"  # parallel train pods on different nodes
    data_pvc: str | None = None  # a PVC holding raw SuperGLUE, mounted read-only for prepare
    data_mount: str = "/mnt/superglue"

    def __post_init__(self) -> None:
        for name in ("retries", "gpus", "train_timeout_s", "step_timeout_s"):
            if getattr(self, name) < 0:
                raise DptuneError(f"{name}: {getattr(self, name)} must be >= 0")
        if self.parallelism is not None and self.parallelism < 0:
            raise DptuneError(f"parallelism: {self.parallelism} must be >= 0")
        if self.workspace_access_mode not in ACCESS_MODES:
            raise DptuneError(
                f"--access-mode: {self.workspace_access_mode!r} is not one of "
                f"{', '.join(ACCESS_MODES)}"
            )
        names = [("--storage-class", self.workspace_storage_class)]
        names += [("--image-pull-secret", s) for s in self.image_pull_secrets]
        names += [("--mlflow-secret", self.mlflow_secret), ("--data-pvc", self.data_pvc)]
        names += [("--hf-token-secret", self.hf_token_secret)]
        for flag, name in names:
            if name and not _K8S_NAME.match(name):
                raise DptuneError(f"{flag}: {name!r} is not a Kubernetes object name")
        for key, _ in self.gpu_node_selector:
            if not key:
                raise DptuneError("--gpu-node-selector: expected KEY=VALUE")

    def replace(self, **changes: Any) -> PipelineOptions:
        return dataclasses.replace(self, **changes)

    @property
    def single_node_workspace(self) -> bool:
        return bool(self.workspace_size) and self.workspace_access_mode in SINGLE_NODE_MODES

    @property
    def effective_parallelism(self) -> int:
        if self.parallelism is not None:
            return self.parallelism
        return 1 if self.single_node_workspace else DEFAULT_PARALLELISM

    def warnings(self) -> list[str]:
        """What the settings imply that a user may not expect, one line each."""
        if not self.single_node_workspace:
            return []
        mode = self.workspace_access_mode
        if self.parallelism is None:
            return [
                f"workspace {mode}: grid cells train one at a time (parallelism 1), since the "
                "volume attaches to one node at a time; a ReadWriteMany storage class "
                "(--storage-class) lets them run in parallel"
            ]
        if self.effective_parallelism != 1:
            return [
                f"workspace {mode} with parallelism {self.effective_parallelism or 'unlimited'}: "
                "train pods on other nodes wait for the volume until their timeout, unless the "
                "cluster places them all on one node"
            ]
        return []

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


# kfp.local: no Kubernetes secret (MLflow comes from the environment), no taints, no retries
# (a local failure is not a preemption; retrying it only repeats it), and the placeholder image
# is fine (kfp.local's subprocess runner runs no image).
LOCAL_OPTIONS = PipelineOptions(mlflow_secret=None, gpu_toleration=False, retries=0)
