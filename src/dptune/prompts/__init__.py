"""Soft-prompt parameterisations, one folder per method (like PEFT's tuners).

Each folder registers its method in `dptune.prompts.registry` (its config and the import path of
its PromptModule); `dptune.prompts.build.build_prompt` turns a TrainConfig into that module.
This package and the folders' `__init__`s import no torch: the CLI reads the registry on every
start, and the modules load only when a prompt is built.
"""
