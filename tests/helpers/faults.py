"""Rows of the fault table (`make faults`, docs/reliability.md), written by the tests that
inject each fault for real.

A fault test calls `record_fault(...)` once it has checked the outcome. When the environment
variable DPTUNE_FAULT_TABLE names a file, the row is appended to it as one JSON line; otherwise
(a plain `make test`) nothing is written. `scripts/faults.py` runs the fault tests with that
variable set and prints the table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TABLE_ENV = "DPTUNE_FAULT_TABLE"


def record_fault(fault: str, survived: bool, lost: str, recovery_s: float | None) -> None:
    """One row: the fault injected, whether the run survived it, what data was lost ("none" is
    the goal) and the seconds from the fault to a complete, usable result (None: no recovery
    step was needed)."""
    target = os.environ.get(TABLE_ENV)
    if not target:
        return
    row = {
        "test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],  # file::name
        "fault": fault,
        "survived": survived,
        "lost": lost,
        "recovery_s": None if recovery_s is None else round(recovery_s, 2),
    }
    with Path(target).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def crash_at_step(cfg: Any, step: int) -> None:
    """Train `cfg` and raise KeyboardInterrupt inside its `step`-th forward pass, as a crash
    would, leaving the run folder with the checkpoints written before it."""
    import pytest

    from dptune.training.trainer import Trainer

    trainer = Trainer(cfg, progress=False)
    trainer.prepare()
    real_loss, calls = trainer.model_forward, {"n": 0}

    def crashing(batch: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        return real_loss(batch)

    trainer.model_forward = crashing
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
