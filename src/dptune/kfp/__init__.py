"""Kubeflow Pipelines support, one job per module:

- `dptune.kfp.components`: one `@dsl.component` per stage, run in the project image; each body
  imports `dptune.kfp.adapter` and makes one call.
- `dptune.kfp.adapter`: maps component parameters and artifact folders onto
  `dptune.stages.plan` (the profile-to-stage layer `dptune stage ...` and dvc.yaml share),
  calls the stage functions and records results on the output artifacts.
- `dptune.kfp.options`: `PipelineOptions`, the deployment settings fixed at compile time (each
  field is also a `dptune pipeline compile | submit` flag).
- `dptune.kfp.pipeline`: the pipeline graph (prepare -> sample -> ParallelFor over the grid:
  train -> evaluate -> report -> register, the probe beside them) and compiling it to YAML.
- `dptune.kfp.connection`: reaching and authenticating to a Kubeflow Pipelines API, and
  checking its version.
- `dptune.kfp.submit`: a run of a compiled pipeline (or of an uploaded pipeline version).
- `dptune.kfp.local`: the whole pipeline run here with kfp.local.

The CLI is `dptune pipeline ...` (`dptune.cli.pipeline`); see docs/kubeflow.md.
"""
