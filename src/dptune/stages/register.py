"""Stage `register`: name each task's challenger, and promote a champion when told to.

The train stage registers every trained prompt as a new version of the task's registered model
(one per task and backbone, e.g. `dptune-cb-minilm`), tagged with what makes versions
comparable. This stage, per task:
- sets alias `challenger` to the best version *of this pipeline run* (the grid's run folders
  record their versions in tracking.json) by the dev split's primary metric;
- moves `champion` only by explicit promotion: a `version` given by the caller, or the
  challenger when the profile says `mlflow.auto_promote`, and then only to a comparable version
  whose dev score (as its training run logged it) beats the champion's by the profile's
  `mlflow.promotion_margin`, and that
  loads and predicts its input example. A champion someone set by hand is left alone by
  automatic promotion. A challenger that cannot compete (not comparable, not serving, no
  evidence) is reported and the stage succeeds: one changed setting never breaks `dvc repro`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dptune.errors import DptuneError
from dptune.run_folder import RunFolder
from dptune.stages.common import start_tracking

if TYPE_CHECKING:
    from dptune.stages.plan import Plan, StageInputs


def promote_profile(
    plan: Plan,
    inputs: StageInputs,
    *,
    run_dirs: Sequence[str | Path] = (),
    tasks: list[str] | None = None,
    metric: str | None = None,
    version: str | None = None,
) -> dict[str, dict[str, Any]] | None:
    """`register_stage` for each of `tasks` (default: the profile's, or with `run_dirs` those
    whose every grid cell finished: a failed cell keeps its task out of promotion), by task;
    None when the profile registers no prompts (`mlflow.track` or `mlflow.register_prompts`
    off).
    `run_dirs` are the pipeline run's run folders (their versions compete for challenger)."""
    if not (plan.track() and plan.register_prompts):
        return None
    uri = start_tracking()
    model = plan.model(inputs)
    return {
        task: register_stage(
            task,
            model,
            run_versions(run_dirs, uri),
            metric=metric,
            version=version,
            auto_promote=plan.params.mlflow.auto_promote,
            margin=plan.params.mlflow.promotion_margin,
        )  # fmt: skip
        for task in tasks or (complete_tasks(plan, run_dirs) if run_dirs else plan.params.tasks)
    }


def complete_tasks(plan: Plan, run_dirs: Sequence[str | Path]) -> list[str]:
    """The grid's tasks whose every grid cell has a finished run among `run_dirs`."""
    finished = set()
    for run_dir in run_dirs:
        folder = RunFolder(run_dir)
        if folder.is_complete() and folder.has_config():
            finished.add(plan.cell_of(folder.read_config()))
    return [
        task for task in plan.params.tasks
        if all(cell in finished for cell in plan.grid() if cell.task == task)
    ]  # fmt: skip


def run_versions(run_dirs: Sequence[str | Path], uri: str) -> dict[str, list[str]]:
    """Registered model -> the versions the run folders registered in the store at `uri`."""
    versions: dict[str, list[str]] = {}
    for run_dir in run_dirs:
        record = RunFolder(run_dir).read_tracking(uri)
        if record and record.get("version") and record.get("registered_model"):
            versions.setdefault(str(record["registered_model"]), []).append(str(record["version"]))
    return versions


def register_stage(
    task: str,
    model: str,
    run_versions: dict[str, list[str]] | None = None,
    *,
    metric: str | None = None,
    version: str | None = None,
    auto_promote: bool = False,
    margin: float | None = None,
) -> dict[str, Any]:
    """Set the challenger of (`task`, backbone `model`) and promote as asked (a challenger must
    beat the champion by `margin`, default promotion's own); the outcome."""
    from dptune import tracking

    start_tracking()
    name = tracking.registered_model_name(task, model)
    mine = (run_versions or {}).get(name, [])
    challenger = tracking.set_challenger(name, mine, metric=metric) if mine else None
    outcome: dict[str, Any] = {
        "model": name,
        "challenger": challenger.candidate if challenger else None,
        "uri": f"models:/{name}@{tracking.CHAMPION}",
    }
    if version is None and not auto_promote:
        champion = tracking.current_champion(name)
        outcome.update(
            metric=challenger.metric if challenger else None,
            champion=champion,
            promoted=False,
            previous_champion=champion,
            summary=f"{name}: challenger v{outcome['challenger']}; champion "
            f"{'v' + champion if champion else 'not set'} (promotion is explicit: "
            "`dptune promote`, or mlflow.auto_promote)",
        )
        return outcome
    chosen = version if version is not None else outcome["challenger"]
    try:
        margin_option = {} if margin is None else {"margin": margin}
        result = tracking.promote(
            name, metric=metric, version=chosen, automatic=version is None, **margin_option
        )
    except DptuneError as err:
        if version is not None:  # the caller named it: their mistake, one line
            raise
        # a challenger that cannot compete is news, not a failed pipeline
        champion = tracking.current_champion(name)
        print(f"warning: {name}: {err}", file=sys.stderr)
        outcome.update(
            metric=challenger.metric if challenger else None, champion=champion,
            promoted=False, previous_champion=champion, summary=f"{name}: {err}",
        )  # fmt: skip
        return outcome
    outcome.update(
        metric=result.metric,
        champion=result.champion,
        promoted=result.promoted,
        previous_champion=result.previous_champion,
        summary=result.summary,
    )
    return outcome
