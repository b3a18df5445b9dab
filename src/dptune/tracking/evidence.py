"""What promotion may believe about a version: the dev score its training run logged, and
whether its model code is this dptune's own. A version's tags are labels anyone may edit; the
run that trained it is the evidence.

A version counts only if its run exists, names the version's model as the one dptune logged in
it (`dptune.model_id` is the version's source: the version is that run's model), agrees with
the version's labels on task, protocol and format (its params), and logged `best_dev_<metric>`
(`runs.final_metrics`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

import dptune
from dptune.tracking.pyfunc import MODEL_ID_TAG

LINEAGE_PARAMS: tuple[str, ...] = ("task", "protocol", "format")
ENTRY = "pyfunc_entry.py"


@dataclass(frozen=True)
class Evidence:
    value: float | None  # the run's dev score; None when the version has no evidence
    why: str = ""  # what is missing, when value is None


def dev_score(client: MlflowClient, version: ModelVersion, key: str) -> Evidence:
    """`key` (`dev_<m>`) as the version's training run logged it, after checking lineage."""
    if not version.run_id:
        return Evidence(None, "no training run")
    try:
        run = client.get_run(version.run_id)
    except MlflowException:
        return Evidence(None, f"training run {version.run_id} not found")
    logged = run.data.tags.get(MODEL_ID_TAG)
    if not logged or version.source != f"models:/{logged}":
        return Evidence(None, f"run {version.run_id} did not log this model through dptune")
    for param in LINEAGE_PARAMS:
        logged, label = run.data.params.get(param), version.tags.get(param)
        if logged is not None and label is not None and logged != label:
            return Evidence(None, f"tag {param}={label!r} but its run trained {logged!r}")
    value = run.data.metrics.get(f"best_{key}")
    if value is None:
        return Evidence(None, f"run {version.run_id} logged no best_{key}")
    return Evidence(float(value))


def code_digest(package: Path) -> str:
    """sha256 over the package's Python sources (relative path and content), in path order."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def own_code_digest() -> str:
    return code_digest(Path(dptune.__file__).parent)


def foreign_code(model_dir: Path) -> str | None:
    """Why the downloaded model at `model_dir` does not run this dptune's own code, or None.
    Checked before the model is loaded: loading runs its code in this process."""
    import yaml

    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8")) or {}
    flavor = (mlmodel.get("flavors") or {}).get("python_function") or {}
    # "models from code": MLflow runs <model>/<basename of model_code_path>
    entry = model_dir / Path(str(flavor.get("model_code_path", ""))).name
    own_entry = Path(__file__).with_name(ENTRY)
    if flavor.get("loader_module") != "mlflow.pyfunc.loaders.code_model" or entry.name != ENTRY:
        return "its model is not dptune's pyfunc"
    if not entry.is_file() or entry.read_bytes() != own_entry.read_bytes():
        return f"its {ENTRY} is not this dptune's"
    code = model_dir / str(flavor.get("code") or "code")
    if not (code / "dptune").is_dir() or {p.name for p in code.iterdir()} != {"dptune"}:
        return "its model's code is not the dptune package alone"
    package = code / "dptune"
    theirs, ours = code_digest(package), own_code_digest()
    if theirs != ours:
        return f"its dptune code (sha256 {theirs[:12]}) is not this dptune's ({ours[:12]})"
    return None
