"""The Kubeflow components: one thin `@dsl.component` per pipeline stage.

Every component runs in the one project image (`IMAGE`, built from the Dockerfile; the pipeline
can swap it with `PipelineOptions.image`), which already holds dptune and kfp at its pinned
versions, hence `install_kfp_package=False`. KFP ships each function's source to the pod, so
the body imports what it uses and hands over to `dptune.kfp.adapter`, which calls the same
stage functions as `dptune stage ...` and dvc.yaml.

No `from __future__ import annotations` here: KFP reads the parameter annotations as types.
"""

from typing import List  # noqa: UP035 (KFP reads `List[dict]`, not `list[dict]`, as a typed list)

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from dptune.kfp.options import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prepare(
    params: str,
    data_source: str,
    superglue: Output[Dataset],
    stats: Output[Metrics],
):
    """Fetch the raw SuperGLUE jsonl and validate it in the profile's formats, with stats."""
    from dptune.kfp import adapter

    adapter.prepare(params, data_source, superglue, stats)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def backbone(params: str, superglue: Input[Dataset], backbone: Output[Model]):
    """Materialise the profile's backbone once (hub snapshot at a recorded commit, a copied
    folder, or a built tiny model); later tasks load it with the hub offline."""
    from dptune.kfp import adapter

    adapter.backbone(params, superglue, backbone)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def sample(params: str, superglue: Input[Dataset], samples: Output[Dataset]):
    """Draw the few-shot samples (tasks x K x seeds), a versioned artifact."""
    from dptune.kfp import adapter

    adapter.sample(params, superglue, samples)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def grid(params: str) -> List[dict]:  # noqa: UP006
    """Validate the profile and list its grid cells (task x method x seed).

    `List[dict]`, so a `ParallelFor` over it hands each item on as a STRUCT, the type of
    train's `cell`: a bare `list` makes the loop item a STRING, which the backend's driver
    refuses for a STRUCT input."""
    from dptune.kfp import adapter

    return adapter.grid(params)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    params: str,
    cell: dict,
    superglue: Input[Dataset],
    backbone: Input[Model],
    samples: Input[Dataset],
    workspace: str,
    pipeline_run: str,
    run: Output[Model],
    metrics: Output[Metrics],
):
    """Train one grid cell, resuming from its checkpoint after a retry; log and register it."""
    from dptune.kfp import adapter

    adapter.train(params, cell, superglue, backbone, samples, workspace, pipeline_run, run, metrics)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_job(
    params: str,
    cell: dict,
    superglue: Input[Dataset],
    backbone: Input[Model],
    samples: Input[Dataset],
    workspace: str,
    pipeline_run: str,
    settings: str,
    run: Output[Model],
    metrics: Output[Metrics],
):
    """Train one grid cell on several nodes as a Kubeflow Trainer TrainJob, wait for it and
    print its logs; then log and register it. A cluster without the Trainer: one line, exit 2."""
    import sys

    from dptune.errors import DptuneError
    from dptune.kfp import adapter

    try:
        adapter.train_job(
            params, cell, superglue, backbone, samples, workspace, pipeline_run, settings, run,
            metrics,
        )  # fmt: skip
    except DptuneError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def end_killed_runs(params: str, workspace: str):
    """The exit handler: end KILLED the MLflow runs of cells whose pods died mid-training."""
    from dptune.kfp import adapter

    adapter.end_killed_runs(params, workspace)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    params: str,
    run: Input[Model],
    superglue: Input[Dataset],
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
):
    """Re-score a run's submission files on the test split and the official val set."""
    from dptune.kfp import adapter

    adapter.evaluate(params, run, superglue, evaluation, metrics)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def baseline(
    params: str,
    superglue: Input[Dataset],
    backbone: Input[Model],
    samples: Input[Dataset],
    baselines: Output[Dataset],
):
    """The baseline rows of the results table (majority; head-only for encoders)."""
    from dptune.kfp import adapter

    adapter.baseline(params, superglue, backbone, samples, baselines)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def probe(
    params: str,
    superglue: Input[Dataset],
    backbone: Input[Model],
    samples: Input[Dataset],
    workspace: str,
    run: Output[Model],
    probe_report: Output[Dataset],
    figure: Output[HTML],
    metrics: Output[Metrics],
):
    """Train the rank probe and draw the Sigma-sign / rank figure (paper Fig. 3)."""
    from dptune.kfp import adapter

    adapter.probe(
        params, superglue, backbone, samples, workspace, run, probe_report, figure, metrics
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def report(
    params: str,
    runs: Input[list[Model]],
    evaluations: Input[list[Dataset]],
    baselines: Input[Dataset],
    probe_report: Input[Dataset],
    table: Output[Markdown],
    results: Output[Dataset],
    metrics: Output[Metrics],
):
    """The paper-style results table (mean +- std over seeds) of every grid run."""
    from dptune.kfp import adapter

    adapter.report(params, runs, evaluations, baselines, probe_report, table, results, metrics)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(
    params: str,
    backbone: Input[Model],
    runs: Input[list[Model]],
    promotions: Output[Markdown],
):
    """Set each complete task's challenger to the best version of this pipeline run's runs,
    and promote `champion` as the profile says."""
    from dptune.kfp import adapter

    adapter.register(params, backbone, runs, promotions)


COMPONENTS = {
    "prepare": prepare,
    "backbone": backbone,
    "sample": sample,
    "grid": grid,
    "train": train,
    "train_job": train_job,
    "end_killed_runs": end_killed_runs,
    "evaluate": evaluate,
    "baseline": baseline,
    "probe": probe,
    "report": report,
    "register": register,
}


def compile_components(out_dir: str) -> list[str]:
    """Write each component as `<out_dir>/<stage>/component.yaml`, reusable in any pipeline.

    `kfp.components.load_component_from_file` loads them; they run the project image.
    """
    from pathlib import Path

    from kfp import compiler

    written = []
    for name, component in COMPONENTS.items():
        path = Path(out_dir) / name / "component.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(component, str(path))
        written.append(str(path))
    return written
