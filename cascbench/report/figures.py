"""The figures: drawing functions that take tidy data and return a matplotlib Figure plus the data
drawn (written beside the figure as CSV).

No pyplot: figures are `matplotlib.figure.Figure` objects rendered by the Agg canvas, so nothing
here touches global matplotlib state or needs a display. Seaborn provides the style and palette.
Every method has one colour in every figure (`method_colour`).
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cascbench.io import atomic_write_bytes
from cascbench.report.stats import t_interval_half_width
from cascbench.report.sweeps import Sweep
from cascbench.report.tables import LAST_METHODS, PAPER_METHOD_ORDER

ErrorKind = Literal["std", "ci"]

#: Methods with a colour of their own, in a fixed order (adding a method never recolours others).
_KNOWN_METHODS = (
    *PAPER_METHOD_ORDER,
    *LAST_METHODS,
    "neuralsort_ce",
    "softsort_ce",
    "dftopk",
    "cloes",
)
_PALETTE = [to_hex(c) for c in sns.color_palette("tab10", 10)] + [
    to_hex(c) for c in sns.color_palette("Dark2", 8)
]
# LCRON gets red, the colour of "ours" in the paper's figures; the rest follow tab10.
_BASE_COLOURS = dict(
    zip(
        _KNOWN_METHODS,
        [c for i, c in enumerate(_PALETTE) if i != 3][: len(_KNOWN_METHODS) - 1],
        strict=False,
    )
)
_BASE_COLOURS["lcron"] = _PALETTE[3]
_STYLE = {"axes.spines.right": False, "axes.spines.top": False}


def _stable_fraction(text: str) -> float:
    """A number in [0, 1) that depends only on `text` (Python's hash() changes between runs)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2**32


def method_colour(label: str) -> str:
    """The colour of a row label: its method's fixed colour; a variant ("lcron[tau=20.0]") gets a
    lighter or darker shade of it, fixed by the label; unknown methods a colour fixed by name."""
    method = label.split("[", 1)[0]
    base = _BASE_COLOURS.get(method) or _PALETTE[int(_stable_fraction(method) * len(_PALETTE))]
    if method == label:
        return base
    hue, lightness, saturation = colorsys.rgb_to_hls(*to_rgb(base))
    shift = (_stable_fraction(label) - 0.5) * 0.5
    lightness = min(0.85, max(0.15, lightness + shift))
    return to_hex(colorsys.hls_to_rgb(hue, lightness, saturation))


def _error(std: pd.Series | np.ndarray, n: pd.Series | np.ndarray, kind: ErrorKind) -> np.ndarray:
    """Half-widths of the error bars: the std over seeds, or the 95% t interval of the mean."""
    std = np.asarray(std, dtype=np.float64)
    if kind == "std":
        return std
    return t_interval_half_width(std, np.asarray(n, dtype=np.float64))


def _error_label(kind: ErrorKind) -> str:
    return "± std over seeds" if kind == "std" else "± 95% CI of the mean over seeds"


def _panels(count: int, width: float = 4.2, height: float = 3.4) -> tuple[Figure, list]:
    """A figure with `count` panels on a grid of at most 3 columns; unused cells are removed."""
    columns = min(3, count)
    rows = math.ceil(count / columns)
    with sns.axes_style("whitegrid", _STYLE):
        figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
        axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for extra in axes[count:]:
        figure.delaxes(extra)
    return figure, axes[:count]


def _zoom(ax: object, low: np.ndarray, high: np.ndarray, floor: float | None = 0.0) -> None:
    """Y limits around the data (differences between methods are a few thousandths)."""
    low_value, high_value = np.nanmin(low), np.nanmax(high)
    if not np.isfinite(low_value) or not np.isfinite(high_value):
        return
    pad = max(high_value - low_value, 1e-3) * 0.15
    bottom = low_value - pad if floor is None else max(floor, low_value - pad)
    ax.set_ylim(bottom, high_value + pad)


def bar_figure(
    mean: pd.DataFrame,
    std: pd.DataFrame,
    n: pd.DataFrame,
    title: str,
    error: ErrorKind = "std",
    marks: pd.DataFrame | None = None,
    marks_meaning: str = "",
) -> tuple[Figure, pd.DataFrame]:
    """Grouped bars: one panel per metric (column of `mean`), one bar per row label, error bars.

    Bars start at 0, where the y-axis starts (so that their lengths compare); each carries its
    mean, and its significance mark when `marks` (str[label, metric]: "†", "‡" or "", from the
    report's comparison) has one; `marks_meaning` says what they mean. mean, std, n:
    float[label, metric] (a SummaryTable's frames). Returns the figure and its data (label,
    metric, mean, std, n, error, mark)."""
    metrics = list(mean.columns)
    labels = list(mean.index)
    figure, axes = _panels(len(metrics), width=max(3.6, 0.55 * len(labels) + 1.5))
    rows = []
    for ax, metric in zip(axes, metrics, strict=True):
        err = np.nan_to_num(_error(std[metric], n[metric], error))
        values = mean[metric].to_numpy(dtype=float)
        positions = np.arange(len(labels))
        ax.bar(
            positions,
            values,
            yerr=err,
            color=[method_colour(label) for label in labels],
            capsize=3,
            edgecolor="black",
            linewidth=0.4,
        )
        column = marks[metric] if marks is not None and metric in marks else None
        signs = ["" if column is None else str(column.get(label, "") or "") for label in labels]
        tops = np.nan_to_num(values) + err
        for x, top, value, sign in zip(positions, tops, values, signs, strict=True):
            if not np.isnan(value):
                ax.annotate(
                    f"{value:.3f}{sign}", (x, top), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7, rotation=90 if len(labels) > 4 else 0,
                )  # fmt: skip
        ax.set_xticks(positions, labels, rotation=35, ha="right", fontsize=8)
        ax.set_title(metric, fontsize=10)
        ax.set_ylabel(f"{metric} (axis from 0)", fontsize=9)
        ax.grid(axis="x", visible=False)
        low = min(0.0, float(np.nanmin(values - err))) if len(values) else 0.0
        high = max(float(np.nanmax(tops)), 0.0) if len(values) else 1.0
        ax.set_ylim(low, high + (high - low) * (0.25 if len(labels) > 4 else 0.12) + 1e-9)
        rows += [
            {"method": label, "metric": metric, "mean": mean.at[label, metric],
             "std": std.at[label, metric], "n": int(n.at[label, metric]), "error": e,
             "mark": sign}
            for label, e, sign in zip(labels, err, signs, strict=True)
        ]  # fmt: skip
    caption = f"{title} ({_error_label(error)}; bars from 0, labelled with their mean)"
    if marks_meaning:
        caption += f"\n{marks_meaning}"
    figure.suptitle(caption, fontsize=10)
    return figure, pd.DataFrame(rows).assign(error_kind=error)


def _log_scale(values: list[float]) -> bool:
    """Values spanning a decade or more (τ from 1 to 1000, learning rates) read better on log x."""
    return min(values) > 0 and max(values) / min(values) >= 10


def sensitivity_figure(
    sweeps: list[Sweep], error: ErrorKind = "std"
) -> tuple[Figure, pd.DataFrame]:
    """Metric against a swept parameter: one panel per metric, one line per method (its sweep),
    a shaded error band; a non-numeric value of the sweep (None: e.g. learned loss weights instead
    of a fixed λ) is a dashed horizontal line of the method's colour.

    sweeps: sweeps of one parameter (same setting, dataset and context), one per method."""
    parameter = sweeps[0].parameter
    metrics = list(sweeps[0].mean.columns)
    figure, axes = _panels(len(metrics))
    numbers = [v for s in sweeps for v in s.mean.index if v is not None]
    log_x = _log_scale([float(v) for v in numbers])
    rows = []
    for ax, metric in zip(axes, metrics, strict=True):
        low, high = [], []
        for sweep in sweeps:
            colour = method_colour(sweep.method)
            values = list(sweep.mean.index)
            err = _error(sweep.std[metric], sweep.n[metric], error)
            numeric = [i for i, v in enumerate(values) if v is not None]
            x = np.array([float(values[i]) for i in numeric])
            y = sweep.mean[metric].to_numpy()[numeric]
            e = np.nan_to_num(err[numeric])
            ax.plot(x, y, marker="o", color=colour, label=sweep.method)
            ax.fill_between(x, y - e, y + e, color=colour, alpha=0.15, linewidth=0)
            for i, value in enumerate(values):
                if value is None:
                    ax.axhline(
                        sweep.mean[metric].iloc[i],
                        color=colour,
                        linestyle="--",
                        linewidth=1,
                        label=f"{sweep.method} ({parameter}=None)",
                    )
            low.append(sweep.mean[metric].to_numpy() - np.nan_to_num(err))
            high.append(sweep.mean[metric].to_numpy() + np.nan_to_num(err))
            rows += [
                {"method": sweep.method, "parameter": parameter, "value": value, "metric": metric,
                 "mean": sweep.mean[metric].iloc[i], "std": sweep.std[metric].iloc[i],
                 "n": int(sweep.n[metric].iloc[i]), "error": err[i]}
                for i, value in enumerate(values)
            ]  # fmt: skip
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(parameter)
        ax.set_title(metric, fontsize=10)
        _zoom(ax, np.concatenate(low), np.concatenate(high))
    axes[0].legend(fontsize=8)
    first = sweeps[0]
    context = ", ".join(f"{k}={v}" for k, v in first.context.items())
    figure.suptitle(
        f"Sensitivity to {parameter}: {first.setting} on {first.dataset}"
        + (f", {context}" if context else "")
        + f" ({_error_label(error)})",
        fontsize=11,
    )
    return figure, pd.DataFrame(rows).assign(error_kind=error)


def per_day_figure(
    per_day: pd.DataFrame, metrics: list[str], title: str, error: ErrorKind = "std"
) -> tuple[Figure, pd.DataFrame]:
    """The streaming protocol (the paper's Figure 2): each test day's metric, one panel per metric,
    one line per method (mean over seeds, shaded error band).

    per_day: one row per (method, seed, day) with the metric columns."""
    grouped = per_day.groupby(["method", "day"])[metrics]
    mean, std, count = grouped.mean(), grouped.std(ddof=1), grouped.count()
    labels = list(dict.fromkeys(per_day["method"]))
    figure, axes = _panels(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        for label in labels:
            days = mean.loc[label].index.to_numpy()
            y = mean.loc[label, metric].to_numpy()
            e = np.nan_to_num(_error(std.loc[label, metric], count.loc[label, metric], error))
            colour = method_colour(label)
            ax.plot(days, y, marker="o", markersize=3, color=colour, label=label)
            ax.fill_between(days, y - e, y + e, color=colour, alpha=0.15, linewidth=0)
        ax.set_xlabel("test day")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # day indices, never 1.5
        ax.set_title(metric, fontsize=10)
    axes[0].legend(fontsize=8)
    figure.suptitle(
        f"{title}: each day tested after training on the days before it ({_error_label(error)})",
        fontsize=11,
    )
    data = pd.concat(
        {"mean": mean.stack(), "std": std.stack(), "n": count.stack()}, axis=1
    ).reset_index()
    data.columns = ["method", "day", "metric", "mean", "std", "n"]
    return figure, data.assign(error=_error(data["std"], data["n"], error), error_kind=error)


def funnel_figure(
    mean: pd.DataFrame, std: pd.DataFrame, n: pd.DataFrame, stages: list[tuple[str, int]], title: str,
    error: ErrorKind = "std",
) -> tuple[Figure, pd.DataFrame]:  # fmt: skip
    """The survival funnel: the share of ground-truth items still alive after each stage, one line
    per method, from 1 (all candidates) down to the joint recall.

    mean, std, n: float[label, "survival/<stage>"]; stages: (name, quota) in cascade order."""
    figure, (ax,) = _panels(1, width=7.0, height=4.5)
    ticks = ["all candidates"] + [f"{name}\n(keeps {quota})" for name, quota in stages]
    x = np.arange(len(ticks))
    rows = []
    for label in mean.index:
        columns = [f"survival/{name}" for name, _ in stages]
        y = np.concatenate([[1.0], mean.loc[label, columns].to_numpy(dtype=float)])
        e = np.concatenate([[0.0], _error(std.loc[label, columns], n.loc[label, columns], error)])
        ax.errorbar(
            x,
            y,
            yerr=np.nan_to_num(e),
            marker="o",
            capsize=3,
            color=method_colour(label),
            label=label,
        )
        rows += [
            {"method": label, "stage": stage, "survival": y[i], "error": e[i]}
            for i, stage in enumerate(["all candidates", *[name for name, _ in stages]])
        ]
    ax.set_xticks(x, ticks, fontsize=9)
    ax.set_ylabel("share of ground-truth items alive")
    ax.legend(fontsize=8)
    figure.suptitle(f"Survival funnel\n{title} ({_error_label(error)})", fontsize=11)
    return figure, pd.DataFrame(rows).assign(error_kind=error)


def smoothing_window(steps: int) -> int:
    """Rolling-mean window of the loss curves: about 1/50 of the run, 1 for short runs."""
    return max(1, steps // 50)


#: Prefix of the loss parts that are weights (learned or scheduled), not losses.
WEIGHT_PREFIX = "weight/"


def loss_figure(curves: pd.DataFrame, title: str) -> tuple[Figure, pd.DataFrame]:
    """Training curves: one panel per method, one line per logged series (total and each loss
    part), the mean over seeds at each step, smoothed by a trailing rolling mean. Loss weights
    ("weight/<stage>") are dashed and read on their own scale, the right axis; the legend sits
    under each panel, off the curves.

    curves: one row per (method, seed, step, series) with its value, methods in panel order."""
    mean = curves.groupby(["method", "series", "step"], sort=False)["value"].mean().reset_index()
    labels = list(dict.fromkeys(curves["method"]))
    part_colours = sns.color_palette("Set2", 8)
    figure, axes = _panels(len(labels), height=4.2)
    parts = []
    for ax, label in zip(axes, labels, strict=True):
        own = mean[mean["method"] == label]
        window = smoothing_window(int(own["step"].nunique()))
        smoothed_by_series = {}
        for series, line in own.groupby("series", sort=False):
            smoothed = line["value"].rolling(window, min_periods=1).mean()
            smoothed_by_series[series] = (line, smoothed)
            parts.append(line.assign(smoothed=smoothed.to_numpy(), window=window))
        losses = [s for s in smoothed_by_series if not s.startswith(WEIGHT_PREFIX)]
        weights = [s for s in smoothed_by_series if s.startswith(WEIGHT_PREFIX)]
        to_loss_axis = _weight_scale(
            [smoothed_by_series[s][1] for s in losses], [smoothed_by_series[s][1] for s in weights]
        )
        for index, series in enumerate(smoothed_by_series):
            line, smoothed = smoothed_by_series[series]
            if series == "total":
                style = {"color": method_colour(label), "linewidth": 2.2}
            else:
                style = {"color": part_colours[(index - 1) % len(part_colours)], "linewidth": 1}
            y = smoothed.to_numpy(dtype=float)
            if series in weights:
                style["linestyle"] = "--"
                y = to_loss_axis[0](y)
            ax.plot(line["step"], y, label=series, **style)
        if weights:
            axis = ax.secondary_yaxis("right", functions=(to_loss_axis[1], to_loss_axis[0]))
            axis.set_ylabel("loss weight (dashed)", fontsize=8)
            # Made after the panel's style was applied: take the size of the left axis' ticks.
            axis.tick_params(labelsize=ax.yaxis.get_major_ticks()[0].label1.get_fontsize())
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("loss" if not weights else "loss (solid)", fontsize=8)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    figure.suptitle(f"Training loss: {title} (mean over seeds, rolling mean)", fontsize=11)
    return figure, pd.concat(parts, ignore_index=True)


def _weight_scale(losses: list[pd.Series], weights: list[pd.Series]) -> tuple:
    """(weight -> loss axis, loss axis -> weight): the linear map that lays the weights' range
    over the losses' range, so that weights drawn on the loss axes read on a right axis of
    their own (a second Axes would not belong to the panel)."""

    def span(series: list[pd.Series]) -> tuple[float, float]:
        values = np.concatenate([s.to_numpy(dtype=float) for s in series]) if series else []
        values = np.asarray(values)[np.isfinite(values)]
        if values.size == 0:
            return 0.0, 1.0
        low, high = float(values.min()), float(values.max())
        return (low - 0.5, high + 0.5) if high - low < 1e-12 else (low, high)

    (loss_low, loss_high), (weight_low, weight_high) = span(losses), span(weights)
    scale = (loss_high - loss_low) / (weight_high - weight_low)
    return (
        lambda w: loss_low + (np.asarray(w, dtype=float) - weight_low) * scale,
        lambda y: weight_low + (np.asarray(y, dtype=float) - loss_low) / scale,
    )


def save_figure(figure: Figure, data: pd.DataFrame, folder: Path, name: str) -> list[Path]:
    """Write name.png, name.pdf and the figure's data as name.csv, each atomically."""
    canvas = FigureCanvasAgg(figure)
    paths = []
    # No creation date in the PDF, so that the same runs give the same bytes (committed figures
    # then change only when their content does).
    for suffix, options in (("png", {"dpi": 150}), ("pdf", {"metadata": {"CreationDate": None}})):
        buffer = io.BytesIO()
        canvas.print_figure(buffer, format=suffix, **options)
        path = folder / f"{name}.{suffix}"
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    path = folder / f"{name}.csv"
    atomic_write_bytes(path, data.to_csv(index=False).encode())
    return [*paths, path]
