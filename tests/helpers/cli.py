"""Start `dptune` in a subprocess, as a user (or Kubernetes) would: for tests that signal,
kill, starve or race a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

# No hub access and one OpenMP thread (tiny models; a shared 2-core machine).
_ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def flags(values: Mapping[str, Any], skip: Sequence[str] = ()) -> list[str]:
    """`{"train_limit": 32}` as `["--train-limit", "32"]`; keys in `skip` are left out."""
    out: list[str] = []
    for key, value in values.items():
        if key not in skip:
            out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def dptune(
    args: Sequence[str], env: Mapping[str, str] | None = None, **popen: Any
) -> subprocess.Popen:
    """`dptune ARGS...` as a child process with text stdout and stderr pipes; `env` adds to
    (or, with a value of "", unsets from) this process's environment."""
    full = {**os.environ, **_ENV}
    for key, value in (env or {}).items():
        if value == "":
            full.pop(key, None)
        else:
            full[key] = value
    return subprocess.Popen(
        [sys.executable, "-m", "dptune.cli.main", *args],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def train(values: Mapping[str, Any], *extra: str, **popen: Any) -> subprocess.Popen:
    """`dptune train` with `values` as flags (and `extra` arguments, e.g. --resume)."""
    return dptune(["train", *flags(values), *extra], **popen)


def run_dptune(
    *args: Any, cwd: Any, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`dptune ARGS...` run to its end in `cwd` (with its own `$DPTUNE_CACHE` there); `env`
    adds to this process's environment."""
    full = {**os.environ, **_ENV, "DPTUNE_CACHE": os.path.join(str(cwd), "cache"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dptune.cli.main", *map(str, args)],
        cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
