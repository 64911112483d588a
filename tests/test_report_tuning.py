"""The tuning view: budget, best configuration and sensitivity read back from the studies."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest
from test_tune import experiment

from cascbench.errors import CascbenchError
from cascbench.experiment.tune import Tuner
from cascbench.report.tuning import (
    at_edge,
    load_tuning,
    sensitivity,
    tuning_figure,
    tuning_markdown,
    tuning_table,
)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tuned")
    tune = {"trials": 4, "search_space": {"train.batch_size": [32, 64]}}
    summary = Tuner(experiment(tune=tune), "test", folder).run()
    return folder, summary


def test_the_table_gives_each_methods_budget_and_best_trial(tuned):
    folder, summary = tuned
    table = tuning_table(load_tuning(folder)).set_index("method")
    assert list(table.index) == ["bce", "lcron"]  # the paper's row order
    assert (table["trials"] == 4).all() and (table["budget"] == 4).all()
    for method in ("bce", "lcron"):
        assert table.loc[method, "best validation joint_recall"] == summary.best[method].value
        best = summary.best[method].params
        for key, value in best.items():
            assert f"{key}={value}" in table.loc[method, "best configuration"]


def test_sensitivity_is_the_spearman_correlation_over_finished_trials(tuned):
    results = load_tuning(tuned[0])
    trials = results.trials[results.trials["method"] == "lcron"]
    rho = sensitivity(results, "lcron")
    for dimension in ("tau", "train.lr"):
        expected = pd.Series(trials[dimension].astype(float)).corr(
            trials["value"], method="spearman"
        )
        assert rho[dimension] == pytest.approx(expected)
    assert list(rho.abs().dropna()) == sorted(rho.abs().dropna(), reverse=True)


def test_the_figure_has_a_row_per_method(tuned):
    figure, data = tuning_figure(load_tuning(tuned[0]))
    assert len(figure.axes) == 4 and set(data["method"]) == {"bce", "lcron"}


def test_a_folder_without_tuning_is_a_clear_error(tmp_path):
    with pytest.raises(CascbenchError, match=r"no tuning in .*Run `cascbench tune"):
        load_tuning(tmp_path)


def test_report_tuning_prints_the_table_and_draws_the_figure(tuned):
    from typer.testing import CliRunner

    from cascbench.cli import app

    folder = tuned[0]
    result = CliRunner().invoke(app, ["report", "--results-dir", str(folder), "--tuning"])
    assert result.exit_code == 0, result.output
    assert "| lcron | 4 | 0 | 4 |" in result.output
    assert (folder / "tuning" / "figures" / "sensitivity.png").is_file()
    latex = CliRunner().invoke(
        app, ["report", "--results-dir", str(folder), "--tuning", "--format", "latex"]
    )
    assert latex.exit_code == 2 and "not latex" in latex.output


def test_a_best_value_at_the_edge_of_its_range_is_flagged(tuned):
    results = load_tuning(tuned[0])
    table = tuning_table(results).set_index("method")
    # Two batch sizes offered: the best is one of them, so always at an edge.
    for method in ("bce", "lcron"):
        assert "train.batch_size (" in table.loc[method, "best at the edge of its range"]
    assert "widen that dimension" in tuning_markdown(results)


def test_at_edge_reads_ranges_in_their_own_scale():
    log = optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)
    assert at_edge(1.2e-3, log) == "near the lower bound"  # 4 % of the way in log space
    assert at_edge(5e-3, log) == ""  # 35 %: inside, though near the low end linearly
    assert at_edge(0.09, log) == "near the upper bound"
    linear = optuna.distributions.FloatDistribution(0.0, 1.0)
    assert at_edge(0.04, linear) == "near the lower bound" and at_edge(0.5, linear) == ""
    assert at_edge(9, optuna.distributions.IntDistribution(1, 9)) == "near the upper bound"
    sizes = optuna.distributions.CategoricalDistribution((1024, 256, 512))
    assert at_edge(256, sizes) == "lowest offered" and at_edge(1024, sizes) == "highest offered"
    assert at_edge(512, sizes) == ""
    modes = optuna.distributions.CategoricalDistribution(("soft", "binary"))
    assert at_edge("soft", modes) == ""  # unordered choices have no edge
