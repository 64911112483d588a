"""scripts/world_level_tests.py: the paired t-test on world means, against hand-computed world
means and scipy's one-sample t-test, and its command line on a store."""

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from report_runs import two_stage_metrics, write_run
from scipy import stats as scipy_stats

from cascbench.experiment.store import ResultStore
from cascbench.report.tables import runs_frame, summarize

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "world_level_tests.py"
WORLD_SHIFT = {0: 0.00, 1: 0.05, 2: -0.04}  # every method alike: cancels in each difference
SEED_NOISE = (0.002, -0.001, 0.0)
# lcron − bce per (world, seed): world means 0.010667, 0.005, 0.014333.
LCRON_GAIN = {0: (0.012, 0.009, 0.011), 1: (0.004, 0.006, 0.005), 2: (0.015, 0.016, 0.012)}
# rankflow − bce: +0.001 in every run of worlds 0 and 1, −0.0005 in world 2.
RANKFLOW_GAIN = {0: 0.001, 1: 0.001, 2: -0.0005}


def joint(method: str, world: int, seed: int) -> float:
    value = 0.7 + WORLD_SHIFT[world] + SEED_NOISE[seed]
    if method == "lcron":
        value += LCRON_GAIN[world][seed]
    if method == "rankflow":
        value += RANKFLOW_GAIN[world]
    return value


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("world_level")
    for method in ("bce", "rankflow", "lcron"):
        for world in WORLD_SHIFT:
            for seed in range(len(SEED_NOISE)):
                metrics = two_stage_metrics(joint(method, world, seed))
                write_run(root, method, seed, metrics, world_seed=world)
    return root


@pytest.fixture(scope="module")
def script():
    return runpy.run_path(str(SCRIPT))


def test_tests_the_world_means_not_the_runs(store, script):
    (table,) = summarize(runs_frame(ResultStore(store).finished_runs()), ["joint_recall"])
    frame = script["world_level_tests"](table, "joint_recall").set_index("pair")
    lcron = frame.loc["lcron − bce"]
    means = np.array([0.032 / 3, 0.005, 0.043 / 3])
    np.testing.assert_allclose(lcron["by_world"], means, atol=1e-12)
    expected = scipy_stats.ttest_1samp(means, 0.0)
    assert lcron["worlds"] == 3
    assert lcron["mean_diff"] == pytest.approx(0.01)
    assert lcron["statistic"] == pytest.approx(expected.statistic)
    assert lcron["p_value"] == pytest.approx(expected.pvalue)
    # RankFlow − BCE: 9 pairs with 8 of 9 the same sign, but only 3 worlds, one against.
    rankflow = frame.loc["rankflow − bce"]
    np.testing.assert_allclose(rankflow["by_world"], [0.001, 0.001, -0.0005], atol=1e-12)
    assert rankflow["p_value"] == pytest.approx(
        scipy_stats.ttest_1samp([0.001, 0.001, -0.0005], 0.0).pvalue
    )
    # Holm over the three pairs, by hand.
    p = frame["p_value"].sort_values()
    holm = np.maximum.accumulate(np.minimum(1.0, p.to_numpy() * [3, 2, 1]))
    np.testing.assert_allclose(frame.loc[p.index, "p_holm"], holm)


def test_command_line_prints_one_row_per_pair(store, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["world_level_tests.py", "--results-dir", str(store)])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and " − " in line]
    assert len(rows) == 3
    lcron = next(line for line in rows if line.startswith("| lcron − bce"))
    assert "+0.0107, +0.0050, +0.0143 | +0.0100" in lcron
    assert "n − 1 degrees of freedom" in out
