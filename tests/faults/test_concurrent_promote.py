"""Two `dptune promote` processes released at once (a barrier) on one registry, over HTTP (a
real `mlflow server`) and on a sqlite store: the aliases end consistent, with one champion
(the better version), `dptune.champion` naming it, and each move recorded once."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from helpers.faults import record_fault
from helpers.mlflow_server import MlflowServer

# A process that has imported everything, says it is ready, waits for the barrier file and then
# runs `dptune promote ARGS...` through the real CLI entry point.
RACER = textwrap.dedent(
    """
    import os, sys, time
    from dptune.cli.main import main
    import dptune.tracking.promotion, mlflow.pyfunc, dptune.inference  # loaded before the start
    barrier = sys.argv[1]
    open(f"{barrier}.{os.getpid()}", "w").close()
    while not os.path.exists(barrier):
        time.sleep(0.001)
    sys.argv = ["dptune", "promote", *sys.argv[2:]]
    main()
    """
)
VERSION_TAGS = ("promoted_because", "promoted_metric", "promoted_value", "previous_champion",
                "promoted_at", "promoted_by", "previous_value", "replaced_by",
                "promotion_declined", "promotion_margin", "promotion_skipped",
                "code_sha256")  # fmt: skip
MODEL_TAGS = ("dptune.champion", "dptune.champion_moves")


@pytest.fixture(scope="module")
def registry(tmp_path_factory, pytestconfig, tiny_t5_dir):
    from helpers.scored_versions import scored_smoke_registry

    return scored_smoke_registry(pytestconfig, tmp_path_factory.mktemp("race"), tiny_t5_dir)


@pytest.fixture(scope="module")
def server(registry):
    """A real `mlflow server` on the registry's own sqlite store."""
    served = MlflowServer(registry.root).start()
    yield served
    served.stop()


def _reset(client: MlflowClient, model: str) -> None:
    """No champion and no promotion record: the state before a first promotion."""
    with contextlib.suppress(MlflowException):
        client.delete_registered_model_alias(model, "champion")
    for key in MODEL_TAGS:
        with contextlib.suppress(MlflowException):
            client.delete_registered_model_tag(model, key)
    for version in client.search_model_versions(f"name = '{model}'"):
        for key in VERSION_TAGS:
            if key in version.tags:
                client.delete_model_version_tag(model, version.version, key)


def _race(uri: str, cwd: Path, args: list[list[str]], barrier: Path) -> list[tuple[int, str]]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_RUN_ID", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(barrier), *a],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for a in args
    ]
    deadline = time.time() + 180
    while len(list(barrier.parent.glob(f"{barrier.name}.*"))) < len(procs):
        assert time.time() < deadline and all(p.poll() is None for p in procs), [
            p.communicate() for p in procs
        ]
        time.sleep(0.01)
    barrier.touch()  # both start now
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append((proc.returncode, out + err))
    return results


@pytest.mark.slow  # two promote processes (each loads and predicts with a model) per case
@pytest.mark.parametrize(
    ("store", "how"),
    [("http", "best"), ("http", "explicit"), ("sqlite", "explicit")],
)
def test_two_promotions_at_once_end_with_one_champion_moved_once(
    registry, server, tmp_path, store, how
):
    model, dpt, pt = registry.model, registry.versions["dpt"], registry.versions["pt"]
    uri = server.uri if store == "http" else registry.uri
    client = MlflowClient(uri)
    _reset(client, model)
    base = ["--model", model, "--metric", "accuracy"]
    # best: both pick the better version; explicit: one promotes each (a flip if unguarded)
    args = [base, base] if how == "best" else [[*base, "--version", dpt], [*base, "--version", pt]]
    started = time.perf_counter()
    results = _race(uri, registry.root, args, tmp_path / "go")
    took = time.perf_counter() - started
    for code, output in results:
        assert code == 0, output

    champion = str(client.get_model_version_by_alias(model, "champion").version)
    tags = client.get_registered_model(model).tags
    assert champion == pt  # the better one, whatever the order
    assert tags["dptune.champion"] == champion
    moves = [output for _, output in results if " is now champion" in output]
    assert int(tags["dptune.champion_moves"]) == len(moves) >= 1
    versions = {str(v.version): v.tags for v in client.search_model_versions(f"name = '{model}'")}
    if how == "best":  # one promotion; the other sees it done
        assert len(moves) == 1, results
        assert sum("already champion" in output for _, output in results) == 1, results
        assert "replaced_by" not in versions[dpt] and versions[pt]["previous_champion"] == "none"
    elif len(moves) == 2:  # dpt first, then pt replaced it: a chain, each move once
        assert versions[dpt]["replaced_by"] == pt and versions[pt]["previous_champion"] == dpt
        assert versions[dpt]["previous_champion"] == "none"
    else:  # pt first; dpt is worse and declined
        assert versions[pt]["previous_champion"] == "none" and "replaced_by" not in versions[pt]
        assert "promoted_by" not in versions[dpt] and "promotion_declined" in versions[dpt]
    lock = [m.name for m in client.search_registered_models() if m.name.endswith("lock")]
    assert not lock, lock  # released
    record_fault(
        f"two dptune promote at once ({'mlflow server' if store == 'http' else 'sqlite'}, "
        f"{'same candidate' if how == 'best' else 'different versions'})",
        survived=True,
        lost="none",
        recovery_s=None,
    )
    print(f"{store}/{how}: both done in {took:.1f} s; {len(moves)} move(s)")
