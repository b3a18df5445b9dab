"""Live MLflow tracking: a `TrainingCallback` that shows a run in MLflow while it trains.

- start: the MLflow run is created (or continued: the run id kept in the run folder's
  tracking.json, or `MLFLOW_RUN_ID`, so `--resume` and a retried Kubeflow task log into the same
  run), with params, tags and the datasets (lineage) logged at once; system metrics (CPU,
  memory, disk, network, GPU where present) are sampled by MLflow's monitor;
- steps and epoch ends: their history rows are queued and sent by a background thread in
  `log_batch` requests every `flush_s` seconds, with the real step and time, so a step waits for
  no network; a checkpoint is logged as the metric `checkpoint_step` and the tag
  `dptune.last_checkpoint`;
- finish: the finished folder is logged as `log_run_folder` logs it (artifacts, final metrics,
  the pyfunc model) into the same run, which ends FINISHED;
- failure: the run ends KILLED on an interrupt (SIGTERM, SIGINT), FAILED on an error.

Tracking never stops training. When the server cannot be reached mid-run, one warning says so
and this run logs nothing more; the run folder stays complete, and `dptune track RUN_DIR`
completes the MLflow run from it later, without duplicating what did arrive.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

from dptune.config import TrainConfig
from dptune.errors import one_line
from dptune.run_folder import RunFolder
from dptune.tracking.client import (
    experiment_name,
    experiment_tags,
    injected_run_id,
    quiet_logger,
)
from dptune.tracking.lineage import log_lineage
from dptune.tracking.run_claim import claimed_run_id
from dptune.tracking.runs import (
    config_params,
    history_metrics,
    log_run_folder,
    logged_points,
    missing_points,
    params_to_log,
    run_name_of,
    run_tags,
)
from dptune.training.events import TrainingCallback, TrainingStart

logger = logging.getLogger(__name__)

FLUSH_S = 2.0  # how often queued points are sent
FINISH_WAIT_S = 30.0  # the most the end of a run waits for the last points to be sent
LOST_MONITOR_WAIT_S = 2.0  # ... and for the system-metrics monitor, once the server is lost
SYSTEM_METRICS_INTERVAL_S = 10.0
# While a run is live, a dead server fails a request at once instead of after MLflow's retries
# (up to minutes); the user's own settings win.
LIVE_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
SYSTEM_MONITOR_LOGGER = "mlflow.system_metrics.system_metrics_monitor"


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {one_line(err)}"


class SystemMonitor(SystemMetricsMonitor):
    """MLflow's system-metrics monitor, plus one sample at the end of a run that ended before
    its first sampling interval did (MLflow's own logs nothing then)."""

    published = False
    final_sample = True  # off when the server is known to be lost

    def publish_metrics(self, metrics: dict[str, float]) -> None:
        super().publish_metrics(metrics)
        self.published = True

    def finish(self) -> None:
        started = self._process is not None
        super().finish()
        if started and self.final_sample and not self.published:
            with contextlib.suppress(Exception):  # tracking never stops training
                self.collect_metrics()
                self.publish_metrics(self.aggregate_metrics())
                self.mlflow_logger.flush()


class _Sender(threading.Thread):
    """Sends queued metric points and tags in batches, off the training thread."""

    def __init__(self, live: LiveRun, flush_s: float) -> None:
        super().__init__(name="dptune-mlflow-sender", daemon=True)
        self.live, self.flush_s = live, flush_s
        self.metrics: list[Metric] = []
        self.tags: dict[str, str] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def put(self, metrics: list[Metric], tags: Mapping[str, str] | None = None) -> None:
        with self.lock:
            self.metrics.extend(metrics)
            self.tags.update(tags or {})

    def run(self) -> None:
        while not self.stopping.wait(self.flush_s):
            self.send()
        self.send()

    def send(self) -> None:
        with self.lock:
            metrics, self.metrics = self.metrics, []
            tags, self.tags = self.tags, {}
        if self.live.degraded or not (metrics or tags):
            return
        try:
            self.live.client.log_batch(
                self.live.run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()]
            )
        except Exception as err:  # the server went away: warn once, keep training
            self.live.lost(err)

    def stop(self, wait_s: float) -> bool:
        """Send what is queued and end; False when that did not finish within `wait_s`."""
        self.stopping.set()
        self.join(wait_s)
        return not self.is_alive()


class LiveRun(TrainingCallback):
    """Track one training run live in MLflow (at the URI `configure()` set)."""

    def __init__(
        self,
        stage: str = "train",
        tags: Mapping[str, str] | None = None,
        experiment: str | None = None,
        log_model: bool = True,
        system_metrics: bool = True,
        flush_s: float = FLUSH_S,
    ) -> None:
        self.stage, self.extra_tags = stage, dict(tags or {})
        self.experiment = experiment or experiment_name(stage)
        self.log_model, self.system_metrics, self.flush_s = log_model, system_metrics, flush_s
        self.uri = mlflow.get_tracking_uri()
        self.client = MlflowClient(self.uri)
        self.run_id: str | None = None
        self.folder: RunFolder | None = None
        self.degraded = False  # the server was lost: log nothing more
        self.logged = False  # the finished folder is in MLflow
        self._warned = False
        self._sent: set[tuple[str, int, float]] = set()
        self._sender: _Sender | None = None
        self._monitor: SystemMonitor | None = None
        self._session: contextlib.ExitStack | None = None
        self._step = 0

    # ---- failures ---------------------------------------------------------------------------
    def lost(self, err: BaseException) -> None:
        """The server failed a request: warn once; the run folder stays the source of truth."""
        self.degraded = True
        if self._warned:
            return
        self._warned = True
        where = self.folder.path if self.folder is not None else "RUN_DIR"
        print(
            f"warning: MLflow tracking at {self.uri} failed after step {self._step} "
            f"({_one_line(err)}); training goes on and the run folder stays complete; "
            f"log it when the server is back with: dptune track {where}",
            file=sys.stderr,
            flush=True,
        )

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn a failed request into the one warning (callers skip work once degraded)."""
        try:
            yield
        except Exception as err:
            self.lost(err)

    # ---- events -----------------------------------------------------------------------------
    def on_start(self, start: TrainingStart) -> None:
        self.folder = RunFolder(start.run_dir)
        self._step = start.step
        self._session = contextlib.ExitStack()
        self._session.enter_context(_live_http_settings())
        # MLflow's system-metrics monitor logs each failure itself; the outage is reported once
        self._session.enter_context(quiet_logger(SYSTEM_MONITOR_LOGGER, logging.CRITICAL))
        with self._guard():
            self._open(start.cfg)
            self._sender = _Sender(self, self.flush_s)
            self._sender.start()
            if self.system_metrics:
                self._start_monitor(resumed=start.resumed)

    def _open(self, cfg: TrainConfig) -> None:
        config = cfg.resolved()
        assert self.folder is not None
        tags = {
            **experiment_tags(),
            **run_tags(config, {}, self.stage, self.extra_tags),
        }
        run_id = injected_run_id() or self.folder.mlflow_run_id(self.uri)
        if run_id is not None:
            self.client.get_run(run_id)  # gone from the store: the one warning
            self.client.update_run(run_id, status="RUNNING")
            self._sent = logged_points(self.client, run_id)  # steps redone after a crash
        else:  # recorded in tracking.json before anything is logged (a kill cannot orphan it)
            run_id = claimed_run_id(
                self.client, self.folder, self.uri, self.experiment, run_name_of(config)
            )
        self.run_id = run_id
        self.folder.write_tracking({"tracking_uri": self.uri, "run_id": run_id, "logged": False})
        params = params_to_log(self.client, run_id, config_params(config))
        self.client.log_batch(run_id, params=params, tags=[RunTag(k, v) for k, v in tags.items()])
        log_lineage(self.client, run_id, config)

    def _start_monitor(self, resumed: bool) -> None:
        interval = float(
            os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL") or SYSTEM_METRICS_INTERVAL_S
        )
        self._monitor = SystemMonitor(
            self.run_id, sampling_interval=interval, resume_logging=resumed, tracking_uri=self.uri
        )
        self._monitor.start()

    def _queue(self, record: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> None:
        if self.degraded or self._sender is None:
            return
        now = int(time.time() * 1000)
        points = missing_points(history_metrics([dict(record)], now), self._sent)
        self._sent.update((m.key, m.step, m.value) for m in points)
        self._sender.put(points, tags)

    def on_step(self, step: int, loss: float, lr: float, record: Mapping[str, Any]) -> None:
        self._step = step
        self._queue(record)

    def on_epoch_end(
        self, epoch: int, step: int, dev: Mapping[str, float], record: Mapping[str, Any]
    ) -> None:
        self._step = step
        self._queue(record)

    def on_checkpoint(self, path: Path, step: int) -> None:
        where = path.relative_to(self.folder.path) if self.folder is not None else path
        self._queue({"step": step, "checkpoint_step": step}, {"dptune.last_checkpoint": str(where)})

    def _stop_background(self) -> None:
        if self._monitor is not None:
            self._monitor.final_sample = not self.degraded
            # finish() stops the monitor's thread and sends its last samples; on a thread of
            # its own, so a lost or hanging server cannot hold up the end of training.
            stopping = threading.Thread(
                target=self._monitor.finish, name="dptune-system-metrics-stop", daemon=True
            )
            stopping.start()
            stopping.join(LOST_MONITOR_WAIT_S if self.degraded else FINISH_WAIT_S)
            self._monitor = None
        if self._sender is not None:
            if not self._sender.stop(FINISH_WAIT_S) and not self.degraded:
                self.lost(TimeoutError(f"points not sent within {FINISH_WAIT_S:.0f} s"))
            self._sender = None
        if self._session is not None:
            self._session.close()
            self._session = None

    def on_finish(self, metrics: Mapping[str, Any]) -> None:
        self._stop_background()
        if self.degraded or self.run_id is None or self.folder is None:
            return
        with self._guard():
            log_run_folder(
                self.folder.path,
                stage=self.stage,
                tags=self.extra_tags,
                log_model=self.log_model,
                experiment=self.experiment,
                run_id=self.run_id,
            )
            self.folder.write_tracking(
                {"tracking_uri": self.uri, "run_id": self.run_id, "logged": True}
            )
            self.logged = True

    def on_failure(self, error: BaseException, interrupted: bool) -> None:
        self._stop_background()
        if self.degraded or self.run_id is None:
            return
        with self._guard():
            self.client.set_tag(self.run_id, "dptune.stopped", _one_line(error))
            self.client.set_terminated(self.run_id, "KILLED" if interrupted else "FAILED")


@contextlib.contextmanager
def _live_http_settings() -> Iterator[None]:
    added = [name for name in LIVE_HTTP_ENV if name not in os.environ]
    os.environ.update({name: LIVE_HTTP_ENV[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
