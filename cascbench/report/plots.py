"""`cascbench plot`: every figure of a results folder, from the same tables as the report.

Per table (setting, dataset, training configuration): grouped bars of the report's columns, the
survival funnel, the training-loss curves, and for the streaming split the per-day lines; per sweep
(one parameter, several methods alike): the sensitivity curves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cascbench.errors import CascbenchError, unknown_name_error
from cascbench.report import figures
from cascbench.report.compare import BETTER, WORSE, CompareOptions, compare
from cascbench.report.loading import RunFiles
from cascbench.report.sweeps import Sweep, find_sweeps
from cascbench.report.tables import SummaryTable, summarize
from cascbench.settings import get_setting

KINDS = ("bars", "sensitivity", "per-day", "funnel", "loss")

#: What each kind needs, for the message when it was asked for and cannot be drawn.
_NEEDS = {
    "sensitivity": "runs of one method that differ in one numeric hyper-parameter "
    "(e.g. --param lcron.tau=20 and lcron.tau=50, or --lr 0.001 and --lr 0.01)",
    "per-day": "runs of the streaming split (per_day.parquet in the run folders)",
    "loss": "the training curves of the runs (curve.parquet; summary runs imported from run "
    "records have none)",
}


@dataclass(frozen=True)
class PlotResult:
    """paths: every file written; skipped: kind -> why it produced nothing."""

    paths: list[Path]
    skipped: dict[str, str]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")


def _table_suffix(table: SummaryTable, several: bool) -> str:
    return (
        f"_{_slug(table.dataset + ('_' + table.common if table.common else ''))}" if several else ""
    )


def _in_row_order(table: SummaryTable) -> pd.DataFrame:
    """The table's runs sorted as its rows (lines and panels follow the table's order)."""
    position = table.runs["variant"].map({v: i for i, v in enumerate(table.variants)})
    return table.runs.assign(position=position).sort_values(["position", "seed"])


def _per_day(table: SummaryTable, files: RunFiles) -> tuple[pd.DataFrame, list[str]]:
    """One row per (method, seed, day) of the table's streaming runs, and the table's metrics
    that every per-day file has."""
    frames = [
        files.per_day(run.run_id).assign(method=run.variant, seed=run.seed)
        for run in _in_row_order(table).itertuples()
        if files.has_per_day(run.run_id)
    ]
    if not frames:
        return pd.DataFrame(), []
    metrics = [m for m in table.mean.columns if all(m in f.columns for f in frames)]
    return pd.concat(frames, ignore_index=True), metrics


def _curves(table: SummaryTable, files: RunFiles) -> pd.DataFrame:
    """One row per (method, seed, step, series) of the table's training curves."""
    frames = []
    for run in _in_row_order(table).itertuples():
        curve = files.curve(run.run_id).drop(columns=["day"], errors="ignore")
        long = curve.melt(id_vars="step", var_name="series", value_name="value")
        frames.append(long.assign(method=run.variant, seed=run.seed))
    return pd.concat(frames, ignore_index=True)


def _marks(table: SummaryTable) -> tuple[pd.DataFrame | None, str]:
    """The report's significance marks (str[label, metric]; the default comparison: each row
    against the best other one) and what they mean; (None, "") for a table of one row."""
    if len(table.variants) < 2:
        return None, ""
    # The marks come from the paired tests alone: the per-request statistics are skipped and the
    # bootstrap CI, which no mark depends on, kept short.
    options = CompareOptions(resamples=0, pair_resamples=200)
    marks = compare(table, options)["mark"].unstack("metric").fillna("")
    meaning = (
        f"{BETTER} / {WORSE}: significantly better / worse than the best other row ({options.test_name} "
        f"over seeds, Holm's correction, α = {options.alpha}), as in `cascbench report`"
    )
    return marks, meaning


def _sweep_groups(sweeps: Iterable[Sweep]) -> dict[tuple, list[Sweep]]:
    """Sweeps drawn together: same setting, dataset, parameter, context and metrics."""
    groups: dict[tuple, list[Sweep]] = {}
    for sweep in sweeps:
        key = (
            sweep.setting,
            sweep.dataset,
            sweep.parameter,
            tuple(sorted(sweep.context.items(), key=str)),
        )
        groups.setdefault(key, []).append(sweep)
    return groups


def draw_figures(
    frame: pd.DataFrame,
    files: RunFiles,
    folder: Path,
    kinds: list[str] | None = None,
    metrics: list[str] | None = None,
    error: figures.ErrorKind = "std",
) -> PlotResult:
    """Draw the figures of `kinds` (None: every kind that the runs can give) into `folder`.

    A kind asked for by name that the runs cannot give is an error that says what it needs."""
    for kind in kinds or []:
        if kind not in KINDS:
            raise unknown_name_error("figure kind", kind, KINDS)
    wanted = list(kinds or KINDS)
    tables = summarize(frame, metrics)
    several = len(tables) > 1
    paths: list[Path] = []
    drawn: set[str] = set()
    for table in tables:
        suffix = _table_suffix(table, several)
        setting = get_setting(table.setting)
        if "bars" in wanted:
            marks, meaning = _marks(table)
            figure, data = figures.bar_figure(
                table.mean, table.std, table.n, table.title, error, marks, meaning
            )
            paths += figures.save_figure(figure, data, folder, f"bars{suffix}")
            drawn.add("bars")
        if "funnel" in wanted:
            survival = [f"survival/{name}" for name in setting.stage_names]
            funnel = summarize(frame.loc[frame["run_id"].isin(table.runs["run_id"])], survival)[0]
            stages = list(zip(setting.stage_names, setting.quotas, strict=True))
            figure, data = figures.funnel_figure(
                funnel.mean, funnel.std, funnel.n, stages, table.title, error
            )
            paths += figures.save_figure(figure, data, folder, f"funnel{suffix}")
            drawn.add("funnel")
        if "loss" in wanted and all(files.has_curve(r) for r in table.runs["run_id"]):
            figure, data = figures.loss_figure(_curves(table, files), table.title)
            paths += figures.save_figure(figure, data, folder, f"loss{suffix}")
            drawn.add("loss")
        if "per-day" in wanted:
            per_day, day_metrics = _per_day(table, files)
            if day_metrics:
                figure, data = figures.per_day_figure(per_day, day_metrics, table.title, error)
                paths += figures.save_figure(figure, data, folder, f"per_day{suffix}")
                drawn.add("per-day")
    if "sensitivity" in wanted:
        groups = _sweep_groups(find_sweeps(frame, metrics))
        several_datasets = frame["dataset"].nunique() > 1
        for (_, dataset, parameter, context), sweeps in groups.items():
            name = f"sensitivity_{parameter}"
            name += "".join(f"_{k}={v}" for k, v in context)
            name += f"_{dataset}" if several_datasets else ""
            figure, data = figures.sensitivity_figure(sweeps, error)
            paths += figures.save_figure(figure, data, folder, _slug(name))
            drawn.add("sensitivity")
    skipped = {kind: _NEEDS[kind] for kind in wanted if kind not in drawn}
    asked = [kind for kind in kinds or [] if kind in skipped]
    if asked:
        raise CascbenchError(
            "; ".join(f"no {kind} figure: it needs {skipped[kind]}" for kind in asked) + "."
        )
    return PlotResult(paths, skipped)
