"""The tuning view: budget, best configuration and sensitivity read back from the studies."""

from __future__ import annotations

import pandas as pd
import pytest
from test_tune import experiment

from cascbench.errors import CascbenchError
from cascbench.experiment.tune import Tuner
from cascbench.report.tuning import load_tuning, sensitivity, tuning_figure, tuning_table


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
