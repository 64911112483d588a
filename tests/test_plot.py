"""Every figure type from a small hand-made grid: the right number of bars, lines and panels,
PNG + PDF + CSV on disk, and one colour per method across figures."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from report_runs import two_stage_metrics, write_run
from typer.testing import CliRunner

from cascbench.cli import app
from cascbench.experiment.store import ResultStore
from cascbench.report import figures
from cascbench.report.loading import RunFiles
from cascbench.report.plots import _curves, _per_day, draw_figures
from cascbench.report.sweeps import find_sweeps
from cascbench.report.tables import runs_frame, summarize

runner = CliRunner()
METHODS = {"bce": 0.70, "rankflow": 0.72, "lcron": 0.75}
DAYS = 4


def curve(parts, seed):
    steps = np.arange(12)
    frame = pd.DataFrame(
        {"step": steps, "day": steps // 4, "total": 2.0 / (1 + steps) + seed * 0.01}
    )
    for index, part in enumerate(parts):
        frame[part] = 1.0 / (1 + steps) + index
    return frame


PARTS = {"bce": ["bce/retrieval", "bce/ranking"], "rankflow": ["bce/retrieval"], "lcron": ["e2e", "single/ranking", "weight/ranking"]}  # fmt: skip


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """3 methods × 3 seeds, a τ sweep of lcron and neuralsort_ce, and the streaming split."""
    root = tmp_path_factory.mktemp("grid")
    for seed in range(3):
        for method, joint in METHODS.items():
            metrics = two_stage_metrics(joint + 0.002 * seed, survival_retrieval=0.9 + 0.01 * seed)
            write_run(root, method, seed, metrics, curve=curve(PARTS[method], seed))
            per_day = pd.DataFrame({"day": np.arange(1, DAYS + 1)})
            for name, value in metrics.items():
                per_day[name] = value + 0.01 * np.arange(DAYS)
            write_run(root, method, seed, metrics, train={"split": "streaming"}, per_day=per_day)
        for tau in (1, 20, 1000):
            for method in ("lcron", "neuralsort_ce"):
                write_run(
                    root, method, seed, two_stage_metrics(0.7 + tau / 1e4), params={"tau": tau}
                )
        write_run(root, "neuralsort_ce", seed, two_stage_metrics(0.7))  # τ = 50, the default
    return root


def test_bar_figure_has_one_panel_per_metric_and_one_bar_per_row(grid):
    table = summarize(runs_frame(ResultStore(grid).finished_runs()))[0]
    figure, data = figures.bar_figure(table.mean, table.std, table.n, table.title, error="ci")
    axes = figure.get_axes()
    assert len(axes) == len(table.mean.columns) == 5
    for ax, metric in zip(axes, table.mean.columns, strict=True):
        assert len(ax.patches) == len(table.variants)
        heights = [p.get_height() for p in ax.patches]
        np.testing.assert_allclose(heights, table.mean[metric].to_numpy())
        colours = [to_hex(p.get_facecolor()) for p in ax.patches]
        assert colours == [figures.method_colour(v) for v in table.variants]
    assert len(data) == 5 * len(table.variants) and set(data["error_kind"]) == {"ci"}


def test_sensitivity_figure_has_one_line_per_method_on_log_x(grid):
    sweeps = [
        s
        for s in find_sweeps(runs_frame(ResultStore(grid).finished_runs()))
        if s.parameter == "tau"
    ]
    assert sorted(s.method for s in sweeps) == ["lcron", "neuralsort_ce"]
    figure, data = figures.sensitivity_figure(sweeps)
    axes = figure.get_axes()
    assert len(axes) == 5
    for ax in axes:
        labelled = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
        assert [line.get_label() for line in labelled] == [s.method for s in sweeps]
        assert ax.get_xscale() == "log"
    lcron = next(line for line in axes[0].get_lines() if line.get_label() == "lcron")
    np.testing.assert_allclose(lcron.get_xdata(), [1, 20, 50, 1000])
    assert set(data["method"]) == {"lcron", "neuralsort_ce"}


def test_sensitivity_draws_the_none_value_as_a_reference_line():
    from cascbench.report.sweeps import Sweep

    index = pd.Index([None, 0.5, 2.0], dtype=object)
    mean = pd.DataFrame({"joint_recall": [0.75, 0.73, 0.76]}, index=index)
    sweep = Sweep(
        "recflow-2stage", "d", "lcron", "fixed_weight", {}, mean, mean * 0 + 0.001, mean * 0 + 3
    )
    figure, _ = figures.sensitivity_figure([sweep])
    (ax,) = figure.get_axes()
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["lcron", "lcron (fixed_weight=None)"]
    assert ax.get_xscale() == "linear"


def test_per_day_figure_has_one_line_per_method_over_the_days(grid):
    files = RunFiles(ResultStore(grid))
    frame = runs_frame(ResultStore(grid).finished_runs())
    streaming = next(t for t in summarize(frame) if t.train.get("split") == "streaming")
    per_day, metrics = _per_day(streaming, files)
    assert metrics == list(streaming.mean.columns)
    figure, data = figures.per_day_figure(per_day, metrics, streaming.title)
    axes = figure.get_axes()
    assert len(axes) == len(metrics)
    for ax in axes:
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == list(METHODS)
        assert all(list(line.get_xdata()) == [1, 2, 3, 4] for line in lines)
    lcron = data[(data["method"] == "lcron") & (data["metric"] == "joint_recall")]
    np.testing.assert_allclose(lcron["mean"], 0.752 + 0.01 * np.arange(DAYS))


def test_funnel_starts_at_one_with_one_line_per_method(grid):
    table = summarize(
        runs_frame(ResultStore(grid).finished_runs()), ["survival/retrieval", "survival/ranking"]
    )[0]
    stages = [("retrieval", 30), ("ranking", 20)]
    figure, data = figures.funnel_figure(table.mean, table.std, table.n, stages, table.title)
    (ax,) = figure.get_axes()
    assert len(ax.containers) == len(table.variants)  # one error-bar line per method
    for container, variant in zip(ax.containers, table.variants, strict=True):
        line = container.lines[0]
        y = line.get_ydata()
        assert y[0] == 1.0 and y[1] == pytest.approx(table.mean.at[variant, "survival/retrieval"])
        assert y[2] == pytest.approx(table.mean.at[variant, "survival/ranking"])
        assert to_hex(line.get_color()) == figures.method_colour(variant)
    assert len(data) == 3 * len(table.variants)


def test_loss_figure_has_one_panel_per_method_and_one_line_per_series(grid):
    store = ResultStore(grid)
    table = next(t for t in summarize(runs_frame(store.finished_runs())) if not t.train)
    curves = _curves(table, RunFiles(store))
    figure, data = figures.loss_figure(curves, table.title)
    axes = figure.get_axes()
    assert [ax.get_title() for ax in axes] == table.variants
    for ax in axes:
        expected = 1 + len(PARTS.get(ax.get_title(), ["part"]))  # variants: the default curve
        assert len(ax.get_lines()) == expected
    total = data[(data["method"] == "bce") & (data["series"] == "total")]
    np.testing.assert_allclose(total["value"], 2.0 / (1 + np.arange(12)) + 0.01)  # mean of seeds
    assert figures.smoothing_window(12) == 1 and figures.smoothing_window(5000) == 100


def test_colours_are_fixed_per_method():
    assert figures.method_colour("lcron") == figures.method_colour("lcron")
    assert len({figures.method_colour(m) for m in ("bce", "icc", "rankflow", "fs_ranknet", "fs_lambdaloss", "arf", "arf_v2", "lcron")}) == 8  # fmt: skip
    variant = figures.method_colour("lcron[tau=20.0]")
    assert variant != figures.method_colour("lcron") and variant == figures.method_colour(
        "lcron[tau=20.0]"
    )
    assert figures.method_colour("my_plugin_loss") == figures.method_colour("my_plugin_loss")


def test_plot_command_writes_every_figure_type_with_png_pdf_and_csv(grid, tmp_path):
    result = runner.invoke(
        app, ["plot", "--results-dir", str(grid), "--out-dir", str(tmp_path), "--error", "ci"]
    )
    assert result.exit_code == 0, result.output
    names = {p.stem for p in tmp_path.iterdir()}
    for kind in ("bars", "funnel", "loss", "per_day", "sensitivity_tau"):
        assert any(name.startswith(kind) for name in names), (kind, names)
    for name in names:
        for suffix in ("png", "pdf", "csv"):
            path = tmp_path / f"{name}.{suffix}"
            assert path.stat().st_size > 0
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    sensitivity = pd.read_csv(tmp_path / "sensitivity_tau.csv")
    assert set(sensitivity["method"]) == {"lcron", "neuralsort_ce"}
    # Drawn again from the same runs: the same bytes, PDFs included (no creation date).
    again = tmp_path / "again"
    result = runner.invoke(
        app,
        [
            "plot",
            "--results-dir",
            str(grid),
            "--out-dir",
            str(again),
            "--error",
            "ci",
            "--kinds",
            "bars",
        ],
    )
    assert result.exit_code == 0, result.output
    redrawn = sorted(again.iterdir())
    assert redrawn and all(p.read_bytes() == (tmp_path / p.name).read_bytes() for p in redrawn)


def test_plot_kinds_asked_for_must_be_drawable(tmp_path):
    write_run(tmp_path, "bce", 0, two_stage_metrics(0.7))
    result = runner.invoke(app, ["plot", "--results-dir", str(tmp_path), "--kinds", "per-day"])
    assert result.exit_code == 2 and "streaming" in result.output
    result = runner.invoke(app, ["plot", "--results-dir", str(tmp_path), "--kinds", "bars,funnl"])
    assert result.exit_code == 2 and "Did you mean 'funnel'?" in result.output
    result = runner.invoke(app, ["plot", "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "no sensitivity figure" in result.output
    assert {p.name for p in (tmp_path / "figures").iterdir()} >= {
        "bars.png",
        "funnel.pdf",
        "loss.csv",
    }


def test_draw_figures_on_an_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="cascbench run"):
        draw_figures(runs_frame(ResultStore(tmp_path).finished_runs()), None, tmp_path)
