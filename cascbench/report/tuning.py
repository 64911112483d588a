"""The tuning view (`cascbench report --tuning`): each method's budget, best configuration and
validation score, and how sensitive the validation metric is to each tuned dimension.

Reads the Optuna studies `cascbench tune` left (experiment/tune.py). Sensitivity is the Spearman
rank correlation between a dimension's values and the validation metric over a method's finished
trials: a plain, assumption-light summary of which knobs mattered inside the searched range (it
sees monotone effects, not an optimum in the middle; the figure shows both).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from cascbench.errors import CascbenchError
from cascbench.experiment.tune import STUDY_FILE, default_storage, rounded, tuning_folder
from cascbench.report.figures import method_colour
from cascbench.report.tables import variant_order

#: Dimensions shown per method in the sensitivity figure.
TOP_DIMENSIONS = 2


@dataclass(frozen=True)
class TuningResults:
    """trials: one row per trial (method, number, state, value, then one column per dimension);
    identity: per method, what its study was about (setting, dataset, metric, budget, space);
    distributions: per method, what each dimension was drawn from."""

    trials: pd.DataFrame
    identity: dict[str, dict]
    #: per method, each tuned dimension's Optuna distribution (its range or choices)
    distributions: dict[str, dict[str, optuna.distributions.BaseDistribution]]

    @property
    def metric(self) -> str:
        return next(iter(self.identity.values()))["metric"]


def load_tuning(results_dir: Path, storage: str | None = None) -> TuningResults:
    """The studies of a results folder (or of `storage`, an Optuna RDB URL)."""
    url = storage or default_storage(results_dir)
    if storage is None and not (tuning_folder(results_dir) / STUDY_FILE).is_file():
        raise CascbenchError(
            f"no tuning in {results_dir}: {tuning_folder(results_dir) / STUDY_FILE} does not "
            f"exist. Run `cascbench tune --results-dir {results_dir}` first."
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        summaries = optuna.study.get_all_study_summaries(url)
        rows, identity, distributions = [], {}, {}
        for summary in summaries:
            study = optuna.load_study(study_name=summary.study_name, storage=url)
            identity[summary.study_name] = json.loads(summary.user_attrs.get("identity", "{}"))
            drawn_from = distributions.setdefault(summary.study_name, {})
            for trial in study.get_trials(deepcopy=False):
                drawn_from.update(trial.distributions)
                rows.append(
                    {
                        "method": summary.study_name,
                        "number": trial.number,
                        "state": trial.state.name,
                        "value": trial.value,
                        **{k: rounded(v) for k, v in trial.params.items()},
                    }
                )
    except Exception as exc:  # SQLAlchemy's errors are many; each means the same here
        raise CascbenchError(f"cannot read the studies in {url}: {exc}") from None
    if not rows:
        raise CascbenchError(f"the studies in {url} hold no trial yet.")
    return TuningResults(pd.DataFrame(rows), identity, distributions)


def dimensions(results: TuningResults, method: str) -> list[str]:
    """The tuned dimensions of a method, in the order of its search space."""
    return list(results.identity.get(method, {}).get("space", {}))


def sensitivity(results: TuningResults, method: str) -> pd.Series:
    """Spearman ρ between each numeric dimension and the validation metric over the method's
    finished trials, strongest first by |ρ| (NaN: constant values or fewer than 3 trials)."""
    done = results.trials[
        (results.trials["method"] == method) & (results.trials["state"] == "COMPLETE")
    ]
    from scipy import stats  # here: `cascbench report` without --tuning does not need it

    rho = {}
    for dimension in dimensions(results, method):
        values = pd.to_numeric(done[dimension], errors="coerce")
        usable = values.notna() & done["value"].notna()
        if usable.sum() < 3 or values[usable].nunique() < 2 or done["value"][usable].nunique() < 2:
            rho[dimension] = math.nan
            continue
        rho[dimension] = float(stats.spearmanr(values[usable], done["value"][usable]).statistic)
    series = pd.Series(rho, dtype=float)
    return series.reindex(series.abs().sort_values(ascending=False, na_position="last").index)


#: A best value within this share of its range (in log space for a log range) of a bound is at
#: the edge: the optimum may lie beyond the searched range.
EDGE_SHARE = 0.05


def at_edge(value: object, distribution: optuna.distributions.BaseDistribution) -> str:
    """Where `value` sits when it is at the edge of what `distribution` offered ("lowest offered",
    "near the upper bound", ...); "" inside the range, or for unordered choices."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        choices = distribution.choices
        numbers = all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices)
        if not numbers or len(choices) < 2:
            return ""
        return "lowest offered" if value == min(choices) else (
            "highest offered" if value == max(choices) else "")  # fmt: skip
    low, high = float(distribution.low), float(distribution.high)
    scale = math.log if getattr(distribution, "log", False) else float
    share = (scale(float(value)) - scale(low)) / (scale(high) - scale(low))
    if share <= EDGE_SHARE:
        return "near the lower bound"
    return "near the upper bound" if share >= 1 - EDGE_SHARE else ""


def tuning_table(results: TuningResults) -> pd.DataFrame:
    """One row per method: trials finished (failed), the budget, the best validation value, its
    configuration, the dimensions the metric was most sensitive to, and the dimensions whose
    best value sits at the edge of the searched range (`at_edge`)."""
    rows = []
    methods = list(results.identity)
    for method in variant_order(methods, {m: m for m in methods}):
        trials = results.trials[results.trials["method"] == method]
        complete = trials[trials["state"] == "COMPLETE"]
        best = complete.loc[complete["value"].idxmax()] if len(complete) else None
        rho = sensitivity(results, method).dropna()
        rows.append(
            {
                "method": method,
                "trials": int(trials["state"].isin(["COMPLETE", "FAIL"]).sum()),
                "failed": int((trials["state"] == "FAIL").sum()),
                "budget": results.identity[method].get("trials"),
                f"best validation {results.metric}": None if best is None else best["value"],
                "best configuration": ""
                if best is None
                else ", ".join(f"{d}={best[d]}" for d in dimensions(results, method)),
                "sensitivity (Spearman ρ)": ", ".join(f"{d} {r:+.2f}" for d, r in rho.items()),
                "best at the edge of its range": ""
                if best is None
                else ", ".join(
                    f"{d} ({edge})"
                    for d in dimensions(results, method)
                    if d in results.distributions.get(method, {})
                    and (edge := at_edge(best[d], results.distributions[method][d]))
                ),
            }
        )
    return pd.DataFrame(rows)


def tuning_markdown(results: TuningResults) -> str:
    """The tuning table in Markdown, with the protocol stated above it."""
    first = next(iter(results.identity.values()))
    table = tuning_table(results)
    metric_column = f"best validation {results.metric}"
    lines = [
        f"Tuning on the validation day: {first.get('setting')} on "
        f"{first.get('dataset', {}).get('world') or first.get('dataset', {}).get('kind')}; "
        f"seeded TPE (sampler seed {first.get('sampler_seed')}), the same budget for every "
        f"method; each trial is the mean validation {results.metric} over training seed(s) "
        f"{', '.join(map(str, first.get('seeds', [])))}.",
        "",
        "| " + " | ".join(table.columns) + " |",
        "|" + "---|" * len(table.columns),
    ]
    for _, row in table.iterrows():
        cells = [
            "n/a"
            if c == metric_column and row[c] is None
            else (f"{row[c]:.4f}" if c == metric_column else str(row[c]))
            for c in table.columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if table["best at the edge of its range"].astype(bool).any():
        lines += [
            "",
            "A best value at the edge of its range (the lowest or highest choice offered, or "
            f"within {EDGE_SHARE:.0%} of a bound) says that the optimum may lie beyond the "
            "searched range: widen that dimension (`search_space:` in the experiment file) "
            "before reading the comparison as one of tuned methods.",
        ]
    return "\n".join(lines) + "\n"


def tuning_figure(results: TuningResults) -> tuple[Figure, pd.DataFrame]:
    """One row per method: the validation metric of each finished trial against its most
    influential dimensions (log axes where the range is log), the best trial ringed."""
    methods = list(tuning_table(results)["method"])
    with sns.axes_style("whitegrid", {"axes.spines.right": False, "axes.spines.top": False}):
        figure = Figure(figsize=(3.6 * TOP_DIMENSIONS, 2.6 * len(methods)), layout="constrained")
        grid = figure.subplots(len(methods), TOP_DIMENSIONS, squeeze=False)
    drawn = []
    for row, method in zip(grid, methods, strict=True):
        space = results.identity[method].get("space", {})
        trials = results.trials[
            (results.trials["method"] == method) & (results.trials["state"] == "COMPLETE")
        ]
        top = list(sensitivity(results, method).index)[:TOP_DIMENSIONS]
        for ax in row[len(top) :]:
            figure.delaxes(ax)
        if trials.empty:
            continue
        best = trials["value"].idxmax()
        for ax, dimension in zip(row, top, strict=False):
            x = pd.to_numeric(trials[dimension], errors="coerce")
            ax.scatter(x, trials["value"], s=18, color=method_colour(method), alpha=0.8)
            ax.scatter([x[best]], [trials["value"][best]], s=80, facecolors="none", edgecolors="k")
            if str(space.get(dimension, "")).endswith("log") and (x > 0).all():
                ax.set_xscale("log")
                # Three labelled ticks over the trials' range: log axes label only decades,
                # and a tuned range is often within one.
                ticks = np.geomspace(x.min(), x.max(), 3) if x.max() > x.min() else [x.min()]
                ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(method, fontsize=10)
            ax.set_xlabel(dimension)
            ax.set_ylabel(f"validation {results.metric}")
            drawn.append(
                pd.DataFrame(
                    {"method": method, "dimension": dimension, "x": x, "value": trials["value"]}
                )
            )
    if not drawn:
        raise CascbenchError("no finished trial to draw.")
    figure.suptitle("Validation metric against the most influential tuned dimensions (○: best)")
    return figure, pd.concat(drawn, ignore_index=True)
