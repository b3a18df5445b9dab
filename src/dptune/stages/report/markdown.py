"""results.md: the results table in markdown, with the protocol and what each column means,
the bootstrap intervals (dptune.stages.bootstrap) where the evaluate and baseline stages
recorded per-example outcomes, and a line each on the re-scoring and the rank probe."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dptune.config import METHODS
from dptune.prompts.registry import get_method
from dptune.stages.report.scores import METRIC_NAMES, TASK_TITLES
from dptune.stages.report.table import COMPARED_ROWS

DEVIATION_MARK = "‡"  # † marks the rows of later methods
DEVIATION_NOTE = (
    f"{DEVIATION_MARK} Trained with attention dropout off (`attention_dropout: off`, or an "
    "encoder run from before the option): a deviation from the published method, which keeps "
    "the backbone's attention dropout."
)
METRIC_SHORT = {"accuracy": "acc", "f1_macro": "f1", "f1a": "f1a", "em": "em", "f1": "f1"}
EXTRA_MARK = " †"  # after a row that is not one of the paper's methods
WSC_EVALS = {
    "all": "accuracy by label over every example of the test split (the paper's numbers fit it).",
    "positives": "accuracy over the positive examples only, a generation counting right when it "
    "matches the referent (the official DPT code's: 38 of the 104 val examples).",
}


def results_markdown(
    table: Mapping[str, Any],
    run_dirs: Sequence[str | Path],
    evals: Mapping[str, Any] | None,
    baselines: Mapping[str, Any] | None,
    probe: Mapping[str, Any] | None,
) -> str:
    """The whole of results.md: the table, the intervals, the checks."""
    extra = _checks(evals, probe)
    markdown = to_markdown(table) + _intervals(table, run_dirs, evals, baselines)
    return markdown + "".join(f"\n{line}\n" for line in extra)


def _pct(stats: Mapping[str, Any] | None) -> str:
    if stats is None:
        return "–"
    text = f"{100 * stats['mean']:.1f}"
    return f"{text} ± {100 * stats['std']:.1f}" if stats["n"] > 1 else text


def _params(values: list[int]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:,}"
    return f"{values[0]:,}–{values[-1]:,}"


def to_markdown(table: Mapping[str, Any]) -> str:
    """The table itself, then what its columns mean and how it was measured."""
    tasks = table["tasks"]
    metric_names: dict[str, list[str]] = {}
    for row in table["rows"].values():
        for task, cell in row["tasks"].items():
            metric_names.setdefault(task, [m for m in cell if m != "score"])
    headers = ["Method", "#Params"]
    for task in tasks:
        names = metric_names.get(task, [])
        short = "/".join(METRIC_SHORT.get(m, m) for m in names)
        headers.append(f"{TASK_TITLES[task]} ({short})" if len(names) > 1 else TASK_TITLES[task])
    headers += ["Avg", "SuperGLUE"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    extra = _extra_rows(table)
    for name, row in table["rows"].items():
        marked = name + (EXTRA_MARK if name in extra else "")
        marked += f" {DEVIATION_MARK}" if row.get("attention_dropout_off") else ""
        cells = [marked, _params(row["trainable_params"])]
        for task in tasks:
            cell = row["tasks"].get(task)
            names = metric_names.get(task, [])
            cells.append(" / ".join(_pct(cell[m]) for m in names) if cell else "–")
        cells += [_pct(row["avg"]), _pct(row["superglue"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(["# Results", "", *lines, *_notes(table, metric_names)]) + "\n"


def _extra_rows(table: Mapping[str, Any]) -> list[str]:
    """The rows of methods that are not the paper's (later methods: ULPT, DePT)."""
    return [name for name in table["rows"] if name in METHODS and not get_method(name).paper]


def _notes(table: Mapping[str, Any], metric_names: Mapping[str, list[str]]) -> list[str]:
    tasks = table["tasks"]
    protocol = table["protocol"]
    seeds = table["seeds"]
    paper = ", ".join(
        f"{TASK_TITLES[t]} {METRIC_NAMES.get(m, m)}" for t, m in table["paper_metrics"].items()
    )
    official = ", ".join(
        f"{TASK_TITLES[t]} " + " and ".join(METRIC_NAMES.get(m, m) for m in metric_names[t])
        for t in tasks
        if len(metric_names.get(t, [])) > 1
    )
    notes = [
        "",
        f"Backbone: {', '.join(table['backbone'])}. Test-split scores in %, mean ± std over "
        f"{len(seeds)} seed(s) {seeds}; both averages are taken per seed.",
        f"Avg is the paper's (Table 1): the mean over tasks of one metric per task ({paper}). "
        "SuperGLUE is the official benchmark score: the mean over tasks of each task's mean "
        "metric" + (f" ({official} averaged first)." if official else "."),
        f"Protocol: `{protocol['name']}`"
        + (
            " (optimistic: the epoch was chosen on the reported set)."
            if protocol["optimistic"]
            else " (epoch chosen on dev, reported on a disjoint test split)."
        ),
    ]
    notes += [f"- {TASK_TITLES[t]}: {protocol['how'][t]}" for t in tasks if t in protocol["how"]]
    if table.get("wsc_eval"):
        notes.append(
            f"WSC scoring (`wsc_eval: {table['wsc_eval']}`): {WSC_EVALS[table['wsc_eval']]}"
        )
    extra = _extra_rows(table)
    if extra:
        notes.append(
            f"{EXTRA_MARK.strip()} Not part of the paper: {', '.join(extra)}, later methods run "
            "as extra rows on the same data, protocol and seeds; #Params gives each budget."
        )
    if any(row.get("attention_dropout_off") for row in table["rows"].values()):
        notes.append(DEVIATION_NOTE)
    if table.get("unfinished"):
        notes.append(
            f"Not finished ({len(table['unfinished'])} cells without metrics.json, left out of "
            f"the table and its averages): {', '.join(table['unfinished'])}."
        )
    notes.append(
        "#Params counts trainable parameters (prompt plus, for encoder-only backbones, the "
        "classification head); majority is the most frequent training label."
        + (
            " Zero-shot is the frozen model without a prompt, rank decoding."
            if "zero-shot" in table["rows"]
            else ""
        )
    )
    return notes


def _intervals(
    table: Mapping[str, Any],
    run_dirs: Sequence[str | Path],
    evals: Mapping[str, Any] | None,
    baselines: Mapping[str, Any] | None,
) -> str:
    """The bootstrap section (dptune.stages.bootstrap), for the runs the table reports."""
    from dptune.stages import bootstrap

    reported = {Path(d).name for d in run_dirs} - set(table.get("unfinished", []))
    runs = {name: record for name, record in (evals or {}).items() if name in reported}
    by_row = bootstrap.collect_outcomes(runs, baselines)
    by_row = {row: by_row[row] for row in table["rows"] if row in by_row}
    result = bootstrap.intervals(by_row, table["tasks"], COMPARED_ROWS)
    return bootstrap.to_markdown(result, table["tasks"], TASK_TITLES)


def _checks(evals: Mapping[str, Any] | None, probe: Mapping[str, Any] | None) -> list[str]:
    """Lines about the evaluate stage's re-scoring and the rank probe."""
    lines = []
    if evals:
        agree = sum(bool(record.get("matches_run_metrics")) for record in evals.values())
        lines.append(
            f"Re-scored from the submission files: {agree} of {len(evals)} runs match their "
            "metrics.json (decode: generate counts invalid outputs wrong only in metrics.json)."
        )
    summaries = [probe] if probe and "first" in probe else list((probe or {}).values())
    for summary in summaries:  # {task: summary}; a single summary (older probe stage) too
        first, last = summary["first"], summary["last"]
        lines.append(
            f"Rank probe ({TASK_TITLES.get(summary['task'], summary['task'])}, c = "
            f"{summary['prompt_length']}): positive / negative entries of Sigma "
            f"{first['sigma_pos']:.0f} / {first['sigma_neg']:.0f} at step {first['step']} -> "
            f"{last['sigma_pos']:.0f} / {last['sigma_neg']:.0f} at step {last['step']}; "
            f"rank of P {first['rank']:.0f} -> {last['rank']:.0f}."
        )
    return lines
