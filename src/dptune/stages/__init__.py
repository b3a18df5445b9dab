"""The pipeline stages: one function per stage, taking plain arguments and returning a small dict.

`dvc.yaml` runs them through `dptune stage <name>` (dptune.cli.stage), and the Kubeflow
components call the same functions: backbone, prepare, sample, train, evaluate, baseline, probe,
report, register. `params` holds the profile model shared by all of them.
"""
