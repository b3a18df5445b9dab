"""Kubeflow Pipelines support: components, the pipeline, and the steps behind them.

- `dptune.kfp.components`: one `@dsl.component` per stage, run in the project image; each body
  imports `dptune.kfp.steps` and makes one call.
- `dptune.kfp.steps`: turns component parameters and artifact folders into the plain arguments
  of `dptune.stages` (the functions `dptune stage ...` and dvc.yaml call) and records results
  on the output artifacts.
- `dptune.kfp.pipeline`: the pipeline (prepare -> sample -> ParallelFor over the grid: train ->
  evaluate -> report -> register, the probe beside them), compile, submit, run locally.

The CLI is `dptune pipeline ...` (`dptune.cli.pipeline`); see docs/kubeflow.md.
"""
