"""A grid cell on several nodes: a Kubeflow Trainer `TrainJob`, created, awaited and read back
by the `train_job` component through the Kubernetes API (the `kubernetes` client kfp installs).

Pinned API: Kubeflow Trainer v2.3 (`trainer.kubeflow.org/v1alpha1`, the `torch-distributed`
ClusterTrainingRuntime). The workspace PVC is mounted into the trainer pods through
`spec.runtimePatches`, the field Trainer v2.2 introduced in place of `podTemplateOverrides`
(v2.3 merges it as a strategic merge patch); an older Trainer refuses the TrainJob.

The trainer pods run `torchrun -m dptune.kfp.trainjob_worker <spec>`: torchrun reads the node
count, node rank, processes per node and rendezvous from the `PET_*` variables the runtime sets.
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from dptune.errors import DptuneError
from dptune.kfp.options import TRAINER_API_GROUP, TRAINER_API_VERSION

PLURAL = "trainjobs"
RUNTIME_KIND = "ClusterTrainingRuntime"
RUNTIME_PLURAL = "clustertrainingruntimes"
NODE = "node"  # the torch-distributed runtime's replicated job and container
PATCH_MANAGER = "dptune.kfp"
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
WORKSPACE_VOLUME = "kfp-workspace"
WORKER_MODULE = "dptune.kfp.trainjob_worker"
LOG_TAIL_LINES = 200
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class TrainJobFailed(RuntimeError):
    """The TrainJob ended Failed (a rank raised, a node was lost, its deadline passed): the
    task fails, so KFP retries it and the new TrainJob resumes from the last checkpoint."""


class TrainJobSettings(BaseModel):
    """What the pipeline compiles into the `train_job` task (as JSON text)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    nodes: int
    procs_per_node: int
    gpus: int
    accelerator: str
    cpu: str
    memory: str
    image: str
    runtime: str
    timeout_s: int = 0
    node_selector: tuple[tuple[str, str], ...] = ()
    gpu_toleration: bool = True
    image_pull_secrets: tuple[str, ...] = ()
    env: dict[str, str] = {}
    poll_s: float = 30.0


def job_name(pipeline_run: str, cell: str) -> str:
    """A TrainJob name (RFC 1035 label, at most 63 characters) that a retry of the same cell
    in the same pipeline run finds again."""
    digest = hashlib.sha256(f"{pipeline_run}/{cell}".encode()).hexdigest()[:10]
    readable = re.sub(r"[^a-z0-9]+", "-", cell.lower()).strip("-")[:40].strip("-")
    return f"dptune-{readable}-{digest}" if readable else f"dptune-{digest}"


def manifest(
    name: str, namespace: str, settings: TrainJobSettings, spec_file: str, claim: str, mount: str
) -> dict[str, Any]:
    """The TrainJob of one cell: `settings.nodes` nodes running the worker on `spec_file`,
    the workspace PVC `claim` mounted at `mount` in every trainer pod."""
    resources: dict[str, Any] = {"requests": {"cpu": settings.cpu, "memory": settings.memory}}
    if settings.gpus:
        resources["limits"] = {settings.accelerator: str(settings.gpus)}
    pod_spec: dict[str, Any] = {
        "volumes": [{"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": claim}}],
        "containers": [
            {"name": NODE, "volumeMounts": [{"name": WORKSPACE_VOLUME, "mountPath": mount}]}
        ],
    }
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    if settings.gpus and settings.gpu_toleration:
        pod_spec["tolerations"] = [
            {"key": settings.accelerator, "operator": "Exists", "effect": "NoSchedule"}
        ]
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    replicated_job = {"name": NODE, "template": {"spec": {"template": {"spec": pod_spec}}}}
    spec: dict[str, Any] = {
        "runtimeRef": {
            "apiGroup": TRAINER_API_GROUP,
            "kind": RUNTIME_KIND,
            "name": settings.runtime,
        },
        "trainer": {
            "image": settings.image,
            "command": ["torchrun", "-m", WORKER_MODULE, spec_file],
            "numNodes": settings.nodes,
            "numProcPerNode": settings.procs_per_node,
            "resourcesPerNode": resources,
            "env": [{"name": k, "value": v} for k, v in sorted(settings.env.items())],
        },
        "runtimePatches": [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [replicated_job]}}},
            }
        ],
    }
    if settings.timeout_s:
        spec["activeDeadlineSeconds"] = settings.timeout_s
    return {
        "apiVersion": f"{TRAINER_API_GROUP}/{TRAINER_API_VERSION}",
        "kind": "TrainJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "dptune"},
        },
        "spec": spec,
    }


def outcome_of(job: Mapping[str, Any]) -> tuple[str, str] | None:
    """("Complete" | "Failed", message) once the TrainJob has ended, else None."""
    for condition in job.get("status", {}).get("conditions", []) or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"]), str(
                condition.get("message") or condition.get("reason", "")
            )
    return None


@dataclass
class TrainJobs:
    """The Kubernetes calls of one namespace (`api`: a `kubernetes.client.ApiClient`)."""

    api: Any
    namespace: str
    sleep: Callable[[float], None] = field(default=time.sleep)

    @classmethod
    def in_cluster(cls) -> TrainJobs:
        """From the pod's service account (or, outside a cluster, the kubeconfig)."""
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        namespace = (
            SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
            if SERVICE_ACCOUNT_NAMESPACE.is_file()
            else "default"
        )
        return cls(client.ApiClient(), namespace)

    def _custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api)

    def check_trainer(self, runtime: str) -> None:
        """The TrainJob CRD and the runtime exist, else one DptuneError line."""
        from kubernetes.client.exceptions import ApiException

        api_version = f"{TRAINER_API_GROUP}/{TRAINER_API_VERSION}"
        try:
            resources = self._custom().get_api_resources(TRAINER_API_GROUP, TRAINER_API_VERSION)
        except ApiException as err:
            if err.status != 404:
                raise DptuneError(
                    f"--nodes: the Kubernetes API refused {api_version}: {err.reason}"
                ) from None
            resources = None
        if resources is None or PLURAL not in {r.name for r in resources.resources or []}:
            raise DptuneError(
                f"--nodes: Kubeflow Trainer is not installed in this cluster (no TrainJob CRD, "
                f"{api_version}); install Trainer v2.3 or compile with --nodes 1"
            )
        try:
            self._custom().get_cluster_custom_object(
                TRAINER_API_GROUP, TRAINER_API_VERSION, RUNTIME_PLURAL, runtime
            )
        except ApiException as err:
            if err.status == 404:
                raise DptuneError(
                    f"--trainer-runtime: no {RUNTIME_KIND} {runtime} in this cluster "
                    "(kubectl get clustertrainingruntimes)"
                ) from None
            raise DptuneError(f"--trainer-runtime: reading {runtime}: {err.reason}") from None

    def workspace_claim(self, pod: str, mount: str) -> str:
        """The PVC mounted at `mount` in pod `pod` (this task's own pod: the run's workspace)."""
        spec = self._core().read_namespaced_pod(pod, self.namespace).spec
        names = {
            m.name for c in spec.containers for m in c.volume_mounts or [] if m.mount_path == mount
        }
        for volume in spec.volumes or []:
            if volume.name in names and volume.persistent_volume_claim is not None:
                return str(volume.persistent_volume_claim.claim_name)
        raise DptuneError(f"workspace: pod {pod} mounts no PVC at {mount}")

    def get(self, name: str) -> dict[str, Any]:
        return self._custom().get_namespaced_custom_object(
            TRAINER_API_GROUP, TRAINER_API_VERSION, self.namespace, PLURAL, name
        )

    def create(self, body: dict[str, Any]) -> None:
        """Create the TrainJob; one left by an earlier try of this task is awaited again
        unless it failed, then it is replaced (the new one resumes from the checkpoint)."""
        from kubernetes.client.exceptions import ApiException

        custom = self._custom()
        name = body["metadata"]["name"]
        args = (TRAINER_API_GROUP, TRAINER_API_VERSION, self.namespace, PLURAL)
        try:
            custom.create_namespaced_custom_object(*args, body)
            return
        except ApiException as err:
            if err.status != 409:
                raise DptuneError(f"TrainJob {name}: the API refused it: {_reason(err)}") from None
        ended = outcome_of(self.get(name))
        if ended is None or ended[0] == "Complete":
            return
        custom.delete_namespaced_custom_object(*args, name, propagation_policy="Foreground")
        while True:  # the old one's pods go first, so the new one's take their place
            try:
                self.get(name)
            except ApiException as err:
                if err.status == 404:
                    break
                raise
            self.sleep(2.0)
        custom.create_namespaced_custom_object(*args, body)

    def wait(self, name: str, poll_s: float) -> tuple[str, str]:
        while True:
            ended = outcome_of(self.get(name))
            if ended is not None:
                return ended
            self.sleep(poll_s)

    def logs(self, name: str, tail: int = LOG_TAIL_LINES) -> dict[str, str]:
        """The last `tail` lines of each trainer pod's log, by pod name."""
        from kubernetes.client.exceptions import ApiException

        core = self._core()
        pods = core.list_namespaced_pod(self.namespace, label_selector=f"{JOBSET_LABEL}={name}")
        logs = {}
        for pod in sorted(pods.items, key=lambda p: p.metadata.name):
            try:
                logs[pod.metadata.name] = core.read_namespaced_pod_log(
                    pod.metadata.name, self.namespace, container=NODE, tail_lines=tail
                )
            except ApiException as err:
                logs[pod.metadata.name] = f"(no log: {err.reason})"
        return logs


def _reason(err: Any) -> str:
    import json

    try:
        return str(json.loads(err.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(err.reason)


def run_trainjob(jobs: TrainJobs, body: dict[str, Any], poll_s: float) -> str:
    """Create (or find again) the TrainJob, wait for it, print its pods' logs; its message on
    success, TrainJobFailed with the failure and the last log line otherwise."""
    name = body["metadata"]["name"]
    jobs.create(body)
    print(f"dptune: TrainJob {jobs.namespace}/{name} created, waiting", file=sys.stderr)
    state, message = jobs.wait(name, poll_s)
    logs = jobs.logs(name)
    for pod, text in logs.items():
        print(f"----- {pod} -----\n{text.rstrip()}", file=sys.stderr)
    if state != "Complete":
        last = next(
            (
                line
                for text in logs.values()
                for line in reversed(text.splitlines())
                if line.strip()
            ),
            "",
        )
        raise TrainJobFailed(
            f"TrainJob {name} failed: {message}"
            + (f" (last log line: {last.strip()})" if last else "")
        )
    return message
