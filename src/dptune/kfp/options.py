"""How the pipeline is deployed: image, parallelism, resources, retries, timeouts, secrets, the
workspace and where pods may run.

KFP fixes these in the compiled YAML, so they are compile-time options, not pipeline
parameters. Every field of `PipelineOptions` is also a flag of `dptune pipeline compile` and
`submit`, generated from it (`dptune.cli.pipeline`): the flag is `--<field-name>` unless the
field names another (`json_schema_extra={"flag": ...}`), its help is the field's description.
A new setting is one new field. This module imports no kfp, so the CLI can show the defaults
cheaply.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dptune import __version__
from dptune.errors import DptuneError

if TYPE_CHECKING:
    from kfp import dsl

IMAGE_REPOSITORY = "ghcr.io/dptune/dptune"
IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"  # a placeholder: no registry serves it
ALLOW_PLACEHOLDER_FLAG = "--allow-placeholder-image"

# The oldest Kubeflow Pipelines backend that runs the compiled pipeline as written: its deadline
# (`PipelineConfig.active_deadline_seconds`, the workflow's `activeDeadlineSeconds`) is applied
# by the backend from 2.17 on; the optional MLflow keys (`secretAsEnv.optional`) need 2.15.
MIN_BACKEND = (2, 17)
MIN_BACKEND_TEXT = ".".join(map(str, MIN_BACKEND))

ACCESS_MODES = ("ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
SINGLE_NODE_MODES = ("ReadWriteOnce", "ReadWriteOncePod")
DEFAULT_PARALLELISM = 4
# The whole run's deadline: its default, and its floor, one train pod's own default timeout
# plus the steps around it, so a deadline cannot end a run before one cell could train.
DEFAULT_DEADLINE_S = 7 * 24 * 3600
MIN_DEADLINE_S = 6 * 3600
# Kubeflow Trainer: the TrainJob API a `--nodes` cell is created through (docs/kubeflow.md).
TRAINER_API_GROUP = "trainer.kubeflow.org"
TRAINER_API_VERSION = "v1alpha1"
TRAINER_RUNTIME = "torch-distributed"


def is_placeholder_image(image: str) -> bool:
    """Whether `image` is the default `ghcr.io/dptune/dptune:<tag>`, which no registry serves."""
    return image.split("@")[0].rsplit(":", 1)[0] == IMAGE_REPOSITORY


def refuse_placeholder_image(image: str, what: str) -> None:
    if is_placeholder_image(image):
        raise DptuneError(
            f"--image: {image} is a placeholder no registry serves; push the image and pass "
            f"--image <registry>/dptune:<tag> ({ALLOW_PLACEHOLDER_FLAG} to {what} anyway)"
        )


def _matching(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


def _one_of(choices: tuple[str, ...]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return AfterValidator(check)


# The formats Kubernetes (and KFP's task setters) accept, checked here so a bad flag is one line.
K8sName = Annotated[str, _matching(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "a Kubernetes object name")]
Cpu = Annotated[str, _matching(r"^([0-9]*[.])?[0-9]+m?$", "a CPU quantity such as 4 or 500m")]
Memory = Annotated[
    str, _matching(r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$", "a memory quantity such as 16Gi")
]
Duration = Annotated[str, _matching(r"^[0-9]+[smhdw]$", "a duration such as 60s or 5m")]
AbsolutePath = Annotated[str, _matching(r"^/", "an absolute path")]
AccessMode = Annotated[str, _one_of(ACCESS_MODES)]


class PipelineOptions(BaseModel):
    """Deployment settings of the compiled pipeline. Descriptions double as CLI help."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str = Field(IMAGE, min_length=1, description="Image of every component")
    parallelism: int | None = Field(
        None,
        ge=0,
        description=f"Grid cells training at once, 0: no limit (default: {DEFAULT_PARALLELISM}; "
        "1 with a ReadWriteOnce workspace, whose volume attaches to one node at a time)",
    )
    accelerator: str = Field(
        "nvidia.com/gpu", min_length=1, description="GPU resource name of train and probe"
    )
    gpus: int = Field(
        1,
        ge=0,
        description="GPUs per train pod, 0: CPU; above 1 the train pod runs torchrun with one "
        "process per GPU (the probe pod gets one)",
    )
    nodes: int = Field(
        1,
        ge=1,
        description="Nodes per grid cell: above 1 each cell trains as a Kubeflow Trainer "
        f"TrainJob ({TRAINER_API_GROUP}/{TRAINER_API_VERSION}) of this many nodes, --gpus "
        "processes each",
    )
    trainer_runtime: K8sName = Field(
        TRAINER_RUNTIME,
        description="ClusterTrainingRuntime of --nodes TrainJobs",
    )
    gpu_toleration: bool = Field(
        True, description="Train and probe tolerate the usual NoSchedule taint of GPU node pools"
    )
    gpu_node_selector: tuple[tuple[str, str], ...] = Field(
        (),
        description="KEY=VALUE node label the GPU pods (train, probe) need, e.g. "
        "cloud.google.com/gke-accelerator=nvidia-l4 (repeatable)",
    )
    image_pull_secrets: tuple[K8sName, ...] = Field(
        (),
        description="Secret for pulling the image from a private registry (repeatable)",
        json_schema_extra={"flag": "--image-pull-secret"},
    )
    train_cpu: Cpu = Field("4", description="CPU request of train, probe and baseline pods")
    train_memory: Memory = Field(
        "16Gi", description="Memory request of train, probe and baseline pods"
    )
    step_cpu: Cpu = Field("1", description="CPU request of every other pod")
    step_memory: Memory = Field("4Gi", description="Memory request of every other pod")
    retries: int = Field(
        3,
        ge=0,
        description="Retries of a failed train/probe pod (preempted, evicted); the retry "
        "resumes from the run's last checkpoint",
    )
    retry_backoff: Duration = Field("60s", description="Wait before a retry, doubling each time")
    train_timeout_s: int = Field(
        48 * 3600,
        ge=0,
        description="Seconds a train/probe/baseline pod may run, starting included (a volume "
        "that cannot attach, an image that cannot be pulled), 0: none",
        json_schema_extra={"flag": "--train-timeout"},
    )
    step_timeout_s: int = Field(
        2 * 3600,
        ge=0,
        description="Seconds any other pod may run, 0: none",
        json_schema_extra={"flag": "--step-timeout"},
    )
    deadline_s: int = Field(
        DEFAULT_DEADLINE_S,
        description=f"Seconds the whole run may take, pods pending included; at least "
        f"{MIN_DEADLINE_S}, 0: none",
        json_schema_extra={"flag": "--deadline"},
    )
    mlflow_secret: K8sName | None = Field(
        "dptune-mlflow",
        description="Kubernetes secret with MLFLOW_TRACKING_URI (and optional credentials); "
        "'' for none",
    )
    mlflow_from_backend: bool = Field(
        False,
        description="The backend's MLflow plugin (KFP 2.17+) injects MLFLOW_TRACKING_URI, "
        "MLFLOW_RUN_ID and credentials: the secret then maps only MLFLOW_S3_ENDPOINT_URL and "
        "the AWS keys",
    )
    hf_token_secret: K8sName | None = Field(
        None,
        description="Kubernetes secret whose key HF_TOKEN the backbone task gets as HF_TOKEN (a "
        "private or gated hub model); later tasks run with the hub offline",
    )
    workspace_size: str | None = Field(
        "20Gi",
        description="Size of the per-run PVC that keeps run folders (and checkpoints) while "
        "training; '' to train in the output artifacts (no resume after a retry)",
    )
    workspace_storage_class: K8sName | None = Field(
        None,
        description="Storage class of the workspace PVC (default: the cluster's)",
        json_schema_extra={"flag": "--storage-class"},
    )
    workspace_access_mode: AccessMode = Field(
        "ReadWriteMany",
        description=f"Access mode of the workspace PVC: {', '.join(ACCESS_MODES)}; "
        "ReadWriteOnce makes the default parallelism 1",
        json_schema_extra={"flag": "--access-mode"},
    )
    data_pvc: K8sName | None = Field(
        None,
        description="A PVC with the raw SuperGLUE folders, mounted at --data-mount for prepare "
        "(and then the default --data-source)",
    )
    data_mount: AbsolutePath = Field(
        "/mnt/superglue", description="Where prepare mounts --data-pvc"
    )

    @model_validator(mode="wrap")
    @classmethod
    def _one_line(cls, values: Any, handler: Callable[[Any], PipelineOptions]) -> Any:
        try:
            return handler(values)
        except ValidationError as err:
            raise DptuneError(_first_error(err, cls)) from None

    @field_validator("*", mode="before")
    @classmethod
    def _empty_means_none(cls, value: Any, info: ValidationInfo) -> Any:
        """'' (how a flag says "none") is None for a field that may be None."""
        annotation = cls.model_fields[str(info.field_name)].annotation
        return None if value == "" and type(None) in typing.get_args(annotation) else value

    @field_validator("gpu_node_selector", mode="before")
    @classmethod
    def _key_value_pairs(cls, value: Any) -> Any:
        """KEY=VALUE strings (the flag's form) or (key, value) pairs."""
        if isinstance(value, str) or not isinstance(value, typing.Iterable):
            return value
        return tuple(_key_value(item) if isinstance(item, str) else item for item in value)

    @field_validator("deadline_s")
    @classmethod
    def _deadline_floor(cls, value: int) -> int:
        if value != 0 and value < MIN_DEADLINE_S:
            raise ValueError(f"{value} s is below the floor of {MIN_DEADLINE_S} s (0: no deadline)")
        return value

    @model_validator(mode="after")
    def _ranks_share_a_workspace(self) -> PipelineOptions:
        """Every rank of a cell trains into the same run folder, on the workspace."""
        if (self.gpus > 1 or self.nodes > 1) and not self.workspace_size:
            flag = "--nodes" if self.nodes > 1 else "--gpus"
            raise DptuneError(
                f"{flag}: a cell on several processes needs the workspace (--workspace-size), "
                "where all its ranks train into one run folder"
            )
        if self.nodes > 1 and self.workspace_access_mode != "ReadWriteMany":
            raise DptuneError(
                f"--nodes: {self.nodes} nodes share the workspace; --access-mode "
                f"{self.workspace_access_mode} attaches it to one node (use ReadWriteMany)"
            )
        return self

    @property
    def processes_per_node(self) -> int:
        """Training processes per node: one per GPU, one on CPU."""
        return max(self.gpus, 1)

    @classmethod
    def flag_of(cls, name: str) -> str:
        """The command-line flag of the field `name`."""
        extra = cls.model_fields[name].json_schema_extra
        named = extra.get("flag") if isinstance(extra, dict) else None
        return str(named) if named else "--" + name.replace("_", "-")

    def replace(self, **changes: Any) -> PipelineOptions:
        """A copy with `changes`, validated like a new one."""
        return type(self)(**{**dict(self), **changes})

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
        """The run's deadline and the KFP workspace (a PVC per run, shared by its tasks)."""
        from kfp import dsl

        deadline = self.deadline_s or None
        if not self.workspace_size:
            return dsl.PipelineConfig(active_deadline_seconds=deadline) if deadline else None
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
        return dsl.PipelineConfig(workspace=workspace, active_deadline_seconds=deadline)


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"{item!r} is not KEY=VALUE")
    return key, value


def _first_error(err: ValidationError, model: type[PipelineOptions]) -> str:
    """`--flag: what is wrong` for the first error: the flag, since that is what users type."""
    first = err.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    where = model.flag_of(name) if name in model.model_fields else name or "pipeline options"
    if first["type"] == "value_error":  # ours: the message names the value
        return f"{where}: {first['ctx']['error']}"
    if first["type"] == "greater_than_equal":
        return f"{where}: {first['input']!r} must be >= {first['ctx']['ge']}"
    message = first["msg"][:1].lower() + first["msg"][1:]
    return f"{where}: {first['input']!r}: {message}"


# kfp.local: no Kubernetes secret (MLflow comes from the environment), no taints, no retries
# (a local failure is not a preemption; retrying it only repeats it), and the placeholder image
# is fine (kfp.local's subprocess runner runs no image).
LOCAL_OPTIONS = PipelineOptions(mlflow_secret=None, gpu_toleration=False, retries=0)
