"""Kubeflow Pipelines support: components, the pipeline, and the adapter behind them.

- `dptune.kfp.components`: one `@dsl.component` per stage, run in the project image; each body
  imports `dptune.kfp.adapter` and makes one call.
- `dptune.kfp.adapter`: maps component parameters and artifact folders onto
  `dptune.stages.plan` (the profile-to-stage layer `dptune stage ...` and dvc.yaml share),
  calls the stage functions and records results on the output artifacts.
- `dptune.kfp.pipeline`: the pipeline (prepare -> sample -> ParallelFor over the grid: train ->
  evaluate -> report -> register, the probe beside them), compile, submit, run locally.

The CLI is `dptune pipeline ...` (`dptune.cli.pipeline`); see docs/kubeflow.md.
"""
