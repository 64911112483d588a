"""Figures a reviewer can paste: bars from a stated 0 with y-axis labels, their means and the
report's significance marks; loss curves with the legend off the data and the loss weights on an
axis of their own."""

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from report_runs import two_stage_metrics, write_run

from cascbench.experiment.store import ResultStore
from cascbench.report import figures
from cascbench.report.loading import RunFiles
from cascbench.report.plots import _curves, draw_figures
from cascbench.report.tables import runs_frame, summarize


def curve(seed):
    steps = np.arange(20)
    return pd.DataFrame(
        {
            "step": steps,
            "total": 3.0 / (1 + steps) + 0.01 * seed,
            "e2e": 2.0 / (1 + steps),
            "weight/ranking": 1.0 - 0.001 * steps,  # a weight near 1, the losses up to 3
        }
    )


def test_bars_start_at_0_with_labels_means_and_the_report_s_marks(tmp_path):
    # lcron clearly above bce on every seed: the paired t-test marks it († better, ‡ worse).
    for seed in range(4):
        write_run(tmp_path, "bce", seed, two_stage_metrics(0.60 + 0.004 * seed))
        lcron = 0.63 + 0.004 * seed + 0.0005 * seed**2
        write_run(tmp_path, "lcron", seed, two_stage_metrics(lcron))
    frame = runs_frame(ResultStore(tmp_path).finished_runs())
    result = draw_figures(frame, RunFiles(ResultStore(tmp_path)), tmp_path, kinds=["bars"])
    data = pd.read_csv(tmp_path / "bars.csv", keep_default_na=False)
    joint = data[data["metric"] == "joint_recall"].set_index("method")
    assert joint.at["lcron", "mark"] == "†" and joint.at["bce", "mark"] == "‡"
    assert tmp_path / "bars.png" in result.paths

    table = summarize(frame)[0]
    marks = pd.DataFrame({"joint_recall": {"bce": "‡", "lcron": "†"}})
    figure, _ = figures.bar_figure(
        table.mean, table.std, table.n, table.title, marks=marks, marks_meaning="† / ‡: ..."
    )
    for ax, metric in zip(figure.get_axes(), table.mean.columns, strict=True):
        assert ax.get_ylim()[0] == 0.0  # the stated baseline
        assert metric in ax.get_ylabel() and "from 0" in ax.get_ylabel()
        texts = [t.get_text() for t in ax.texts]
        means = table.mean[metric]
        expected = [f"{means[v]:.3f}" for v in table.variants]
        if metric == "joint_recall":
            expected = [f"{means[v]:.3f}{marks.at[v, metric]}" for v in table.variants]
        assert texts == expected
        assert all(p.get_y() == 0 for p in ax.patches)
    assert "bars from 0" in figure._suptitle.get_text() and "† / ‡" in figure._suptitle.get_text()


def test_loss_legend_is_off_the_data_and_weights_have_their_own_axis(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, "lcron", seed, two_stage_metrics(0.7), curve=curve(seed))
    store = ResultStore(tmp_path)
    table = summarize(runs_frame(store.finished_runs()))[0]
    figure, data = figures.loss_figure(_curves(table, RunFiles(store)), table.title)
    FigureCanvasAgg(figure).draw()
    (ax,) = figure.get_axes()
    legend = ax.get_legend()
    assert legend.get_window_extent().y1 <= ax.get_window_extent().y0  # under the panel
    (weight_axis,) = ax.child_axes
    assert "loss weight" in weight_axis.get_ylabel()
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["weight/ranking"].get_linestyle() == "--"
    # Drawn over the losses' range, read on the right axis as the weight itself.
    y = lines["weight/ranking"].get_ydata()
    low = min(lines["e2e"].get_ydata().min(), lines["total"].get_ydata().min())
    high = lines["total"].get_ydata().max()
    assert np.isclose(y.max(), high) and np.isclose(y.min(), low)
    weights = data[data["series"] == "weight/ranking"]
    np.testing.assert_allclose(weights["value"], 1.0 - 0.001 * np.arange(20))
    lo, hi = weight_axis.get_ylim()
    assert lo <= 0.981 and hi >= 1.0 and hi < 1.2  # the weight's own scale
