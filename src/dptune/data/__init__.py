"""The raw SuperGLUE v2 files: where they come from and the hashes they must have.

`superglue.sha256.txt` (sha256sum format, paths `<Task>/<split>.jsonl`) pins every official
file, including those the shared copy lacks (BoolQ train, ReCoRD); see
`../shared/data/superglue/SOURCES.md` for where each hash was recorded.
"""

from dptune.data.fetch import (
    MANIFEST_NAME,
    OFFICIAL_BASE_URL,
    TASK_DIRS,
    FetchReport,
    expected_hashes,
    fetch,
    parse_tasks,
)

__all__ = [
    "MANIFEST_NAME",
    "OFFICIAL_BASE_URL",
    "TASK_DIRS",
    "FetchReport",
    "expected_hashes",
    "fetch",
    "parse_tasks",
]
