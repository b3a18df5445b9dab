"""The task registry: every SuperGLUE task by name, `get_task("cb", fmt="paper")`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dptune.errors import DptuneError
from dptune.tasks.boolq import BoolQ
from dptune.tasks.cb import CB
from dptune.tasks.common import SuperGlueTask
from dptune.tasks.copa import COPA
from dptune.tasks.multirc import MultiRC
from dptune.tasks.record import ReCoRD
from dptune.tasks.rte import RTE
from dptune.tasks.wic import WiC
from dptune.tasks.wsc import WSC

_TASKS: dict[str, type[SuperGlueTask]] = {
    cls.name: cls for cls in (BoolQ, CB, COPA, MultiRC, ReCoRD, RTE, WiC, WSC)
}
# The one task list: TrainConfig, profiles, the data fetcher, the sampler and the report read it.
TASK_NAMES: tuple[str, ...] = tuple(_TASKS)
TASK_DIRS: dict[str, str] = {name: cls.dirname for name, cls in _TASKS.items()}  # "cb": "CB"


def get_task(
    name: str, fmt: str = "paper", options: Mapping[str, Any] | None = None
) -> SuperGlueTask:
    """The task called `name` (case-insensitive, e.g. "cb" or "CB") in format `fmt`."""
    cls = _TASKS.get(name.strip().lower())
    if cls is None:
        raise DptuneError(f"task: unknown task {name!r}; valid tasks: {', '.join(TASK_NAMES)}")
    return cls(fmt=fmt, options=dict(options or {}))  # type: ignore[arg-type]


def task_of(config: Any) -> SuperGlueTask:
    """The task a run trains and is scored on: a TrainConfig (or its stored dict) gives the name,
    the format and the scoring options it sets (WSC: `wsc_eval` -> option `eval`)."""
    values = config if isinstance(config, Mapping) else vars(config)
    name = str(values["task"])
    options = {"eval": values.get("wsc_eval") or "all"} if name.lower() == "wsc" else {}
    return get_task(name, str(values.get("format") or "paper"), options)
