"""Stage `register`: promote a task's best registered prompt version to alias `champion`.

Every trained prompt is registered by the train stage as a new version with alias `challenger`
(one registered model per task and backbone, e.g. `dptune-cb-minilm`). Promotion moves
`champion` to the version with the best test metric (default: the task's primary metric), or to
a chosen version, only when it beats the current champion; the champion then loads as
`models:/<name>@champion`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dptune.stages.common import start_tracking

if TYPE_CHECKING:
    from dptune.stages.plan import Plan, StageInputs


def promote_profile(
    plan: Plan,
    inputs: StageInputs,
    *,
    tasks: list[str] | None = None,
    metric: str | None = None,
    version: str | None = None,
) -> dict[str, dict[str, Any]] | None:
    """`register_stage` for each of `tasks` (default: the profile's), by task; None when the
    profile registers no prompts (`mlflow.track` or `mlflow.register_prompts` off)."""
    if not (plan.track() and plan.register_prompts):
        return None
    model = plan.model(inputs)
    return {
        task: register_stage(task, model, metric=metric, version=version)
        for task in tasks or plan.params.tasks
    }


def register_stage(
    task: str, model: str, *, metric: str | None = None, version: str | None = None
) -> dict[str, Any]:
    """Promote within the registered model of (`task`, backbone `model`); return the outcome."""
    from dptune import tracking

    start_tracking()
    name = tracking.registered_model_name(task, model)
    result = tracking.promote(name, metric=metric, version=version)
    return {
        "model": result.model,
        "metric": result.metric,
        "champion": result.champion,
        "promoted": result.promoted,
        "previous_champion": result.previous_champion,
        "summary": result.summary,
        "uri": f"models:/{result.model}@{tracking.CHAMPION}",
    }
