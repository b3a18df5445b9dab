"""`dptune` as a torchrun rank with a fault of one rank, for tests/training/test_distributed.py.

    torchrun ... tests/helpers/rank_faults.py train --task cb ...

`DPTUNE_FAULT_RANK` picks the rank (default 1) and `DPTUNE_FAULT` the fault:
- `sigterm:N`: the rank sends itself SIGTERM during its N-th training forward pass;
- `nan:N`: its N-th training loss is NaN (the other ranks' are not);
- `kill:N`: the rank dies (SIGKILL) during its N-th training forward pass;
- `writes:<file>`: nothing breaks; every file-system change the rank makes (audit events: an
  open for writing, mkdir, rename, remove) is listed, one path a line, in <file> at exit.
"""

from __future__ import annotations

import atexit
import math
import os
import signal
import sys
from typing import Any

from dptune.backbones.base import Backbone
from dptune.cli.main import main

_WRITE_EVENTS = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "shutil.rmtree"}


def _on_loss(step: int, fault: str) -> None:
    import dptune.backbones.causal
    import dptune.backbones.encoder
    import dptune.backbones.seq2seq  # noqa: F401  (the subclasses to patch)

    for cls in Backbone.__subclasses__():
        real = cls.loss
        calls = {"n": 0}

        def loss(self: Any, batch: Any, real: Any = real, calls: dict = calls) -> Any:
            calls["n"] += 1
            value = real(self, batch)
            if calls["n"] == step and fault == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            if calls["n"] == step and fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if calls["n"] == step and fault == "nan":
                value = value * math.nan
            return value

        cls.loss = loss  # type: ignore[method-assign]


def _record_writes(report: str) -> None:
    written: list[str] = []

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], str | bytes):
            mode, flags = args[1] if len(args) > 1 else None, args[2] if len(args) > 2 else 0
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            if writing:
                written.append(os.fsdecode(args[0]))
        elif event in _WRITE_EVENTS and args:
            written.append(os.fsdecode(args[0]) if isinstance(args[0], str | bytes) else "?")

    def dump() -> None:
        with open(report, "w", encoding="utf-8") as out:
            out.write("".join(f"{path}\n" for path in written))

    sys.addaudithook(hook)
    atexit.register(dump)


if __name__ == "__main__":
    fault = os.environ.get("DPTUNE_FAULT", "")
    if os.environ.get("RANK") == os.environ.get("DPTUNE_FAULT_RANK", "1") and fault:
        kind, _, arg = fault.partition(":")
        if kind == "writes":
            _record_writes(arg)
        else:
            _on_loss(int(arg), kind)
    sys.argv[0] = "dptune"
    main()
