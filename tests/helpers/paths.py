"""Where the suite finds the real SuperGLUE files: the one definition of the shared-data path.

Tests take the session fixtures `superglue_dir` and `superglue_samples_dir` (tests/conftest.py);
module-level code (skip marks, parameter lists, helpers) imports the constants.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# The official files, <Task>/{train,val,test}.jsonl (BoolQ's train file is not there).
SUPERGLUE_DIR = SHARED_DATA / "superglue"
# A few real ReCoRD (and BoolQ train) records in the same layout.
SUPERGLUE_SAMPLES_DIR = SHARED_DATA / "superglue-samples"
