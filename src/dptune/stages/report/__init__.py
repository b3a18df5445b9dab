"""Stage `report`: the paper-style results table (Table 1) from every run of the grid, and
each sweep's table and figure. One module per output:

- `table`: the results table as JSON (rows: baselines and methods; columns: tasks, the paper's
  `Avg` and the official `SuperGLUE` score), from the run folders and the baseline stage;
- `markdown`: results.md, the table with its protocol, notes and bootstrap intervals;
- `results`: the stage's outputs in `out` (`report_stage`): `results.json`, `results.md`,
  `metrics/<row>.json` (numbers only, a DVC metric: `dvc metrics show` prints the table as
  rows), `curves/<run>.csv` and `loss/<run>.csv` (DVC plots), and their MLflow run;
- `sweeps`: `sweeps/<name>.json`, `.md` and `.png` per sweep (`sweep_report_stage`);
- `scores`: what a cell holds (a task's paper metric over seeds) and the names tables print.

A grid cell without metrics.json (failed, or never run) is left out and listed as unfinished,
so the report of what did finish still comes out.
"""

from dptune.stages.report.markdown import to_markdown
from dptune.stages.report.results import report_stage
from dptune.stages.report.scores import paper_metric
from dptune.stages.report.sweeps import SWEEPS_OUT, sweep_report_stage
from dptune.stages.report.table import collect, metric_rows

__all__ = [
    "SWEEPS_OUT",
    "collect",
    "metric_rows",
    "paper_metric",
    "report_stage",
    "sweep_report_stage",
    "to_markdown",
]
