"""The minimum detectable effect, the pairs needed for an effect, and `cascbench power`."""

import io
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from report_runs import two_stage_metrics, write_run
from scipy import stats as scipy_stats
from typer.testing import CliRunner

from cascbench.cli import app
from cascbench.experiment.store import ResultStore
from cascbench.report import stats
from cascbench.report.power import PowerOptions, power_analysis, power_table
from cascbench.report.tables import runs_frame, summarize

runner = CliRunner()


def reference_mde(sd, n, alpha=0.05, power=0.8):
    t = scipy_stats.t
    return (t.ppf(1 - alpha / 2, n - 1) + t.ppf(power, n - 1)) * sd / math.sqrt(n)


def exact_power(effect, sd, n, alpha=0.05):
    """The power of the two-sided paired t-test: the noncentral t distribution of its
    statistic, an independent route to the same question."""
    critical = scipy_stats.t.ppf(1 - alpha / 2, n - 1)
    noncentrality = effect / (sd / math.sqrt(n))
    nct = scipy_stats.nct(n - 1, noncentrality)
    return 1 - nct.cdf(critical) + nct.cdf(-critical)


def test_minimum_detectable_effect_by_hand():
    # t(0.975, 4) = 2.776445, t(0.8, 4) = 0.940965: 3.717410 · 0.005 / √5 = 0.0083124.
    assert stats.minimum_detectable_effect(0.005, 5) == pytest.approx(0.0083124, abs=1e-7)
    assert stats.minimum_detectable_effect(0.005, 5) == pytest.approx(reference_mde(0.005, 5))
    for sd, n, alpha, power in ((0.01, 3, 0.05, 0.8), (0.002, 30, 0.01, 0.9), (1.0, 2, 0.1, 0.5)):
        assert stats.minimum_detectable_effect(sd, n, alpha, power) == pytest.approx(
            reference_mde(sd, n, alpha, power)
        )
    assert math.isnan(stats.minimum_detectable_effect(0.01, 1))
    assert math.isnan(stats.minimum_detectable_effect(float("nan"), 5))
    assert stats.minimum_detectable_effect(0.0, 5) == 0.0


@pytest.mark.parametrize(("n", "tolerance"), [(5, 0.01), (10, 0.005), (30, 0.002)])
def test_the_mde_is_detected_with_about_the_stated_power(n, tolerance):
    mde = stats.minimum_detectable_effect(0.004, n)
    assert exact_power(mde, 0.004, n) == pytest.approx(0.8, abs=tolerance)


def test_mde_is_monotone_in_n_sd_alpha_and_power():
    mdes = [stats.minimum_detectable_effect(0.005, n) for n in range(2, 60)]
    assert all(a > b for a, b in itertools.pairwise(mdes))
    assert stats.minimum_detectable_effect(0.01, 8) == pytest.approx(
        2 * stats.minimum_detectable_effect(0.005, 8)
    )
    assert stats.minimum_detectable_effect(0.005, 8, alpha=0.01) > (
        stats.minimum_detectable_effect(0.005, 8, alpha=0.05)
    )
    assert stats.minimum_detectable_effect(0.005, 8, power=0.9) > (
        stats.minimum_detectable_effect(0.005, 8, power=0.8)
    )


@pytest.mark.parametrize(
    ("sd", "effect"), [(0.005, 0.0064), (0.005, 0.002), (0.02, 0.01), (0.001, 0.0005)]
)
def test_seeds_needed_is_the_first_n_whose_mde_reaches_the_effect(sd, effect):
    needed = stats.seeds_needed(sd, effect)
    n = 2
    while reference_mde(sd, n) > effect:
        n += 1
    assert needed == n
    assert stats.seeds_needed(sd, -effect) == n  # the sign of the effect does not matter


def test_seeds_needed_by_hand_and_edge_cases():
    # For sd 0.005: MDE(6) = 3.4901 · 0.005 / √6 = 0.0071 > 0.0064 ≥ MDE(7) = 3.3526 · 0.005 / √7
    # = 0.0063 (t quantiles at 5 and 6 degrees of freedom).
    assert reference_mde(0.005, 6) > 0.0064 >= reference_mde(0.005, 7)
    assert stats.seeds_needed(0.005, 0.0064) == 7
    assert stats.seeds_needed(0.005, 1.0) == 2
    assert stats.seeds_needed(0.0, 0.001) == 2
    assert stats.seeds_needed(0.005, 0.0) is None
    assert stats.seeds_needed(float("nan"), 0.01) is None
    assert stats.seeds_needed(0.005, 1e-6, max_n=100) is None
    counts = [stats.seeds_needed(0.005, e) for e in (0.02, 0.01, 0.005, 0.0025)]
    assert counts == sorted(counts) and len(set(counts)) == 4


# --- From a pilot's runs -------------------------------------------------------------------------

# joint recall per (world seed, training seed): lcron − bce = DIFF, arf_v2 − bce = 0.
PAIRS = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
DIFF = np.array([0.010, 0.004, 0.007, 0.012, 0.003, 0.006])


@pytest.fixture(scope="module")
def pilot(tmp_path_factory):
    root = tmp_path_factory.mktemp("pilot")
    for (world, seed), diff in zip(PAIRS, DIFF, strict=True):
        base = 0.7 + 0.02 * world + 0.001 * seed
        write_run(root, "bce", seed, two_stage_metrics(base), world_seed=world)
        write_run(root, "lcron", seed, two_stage_metrics(base + diff), world_seed=world)
        write_run(root, "arf_v2", seed, two_stage_metrics(base), world_seed=world)
    return root


def test_power_analysis_of_a_pilot(pilot):
    tables = summarize(runs_frame(ResultStore(pilot).finished_runs()), ["joint_recall"])
    result = power_analysis(tables, PowerOptions())
    assert [(r.first, r.second) for r in result.itertuples()] == [
        ("arf_v2", "bce"),
        ("lcron", "bce"),
        ("lcron", "arf_v2"),
    ]
    row = result.set_index(["first", "second"]).loc[("lcron", "bce")]
    sd = DIFF.std(ddof=1)
    assert (row["n_pairs"], row["n_worlds"]) == (6, 2)
    assert row["mean_diff"] == pytest.approx(DIFF.mean())
    assert row["sd_diff"] == pytest.approx(sd)
    assert row["mde"] == pytest.approx(reference_mde(sd, 6))
    needed = stats.seeds_needed(sd, DIFF.mean())
    assert row["pairs_needed"] == needed
    assert row["seeds_per_world"] == math.ceil(needed / 2)
    same = result.set_index(["first", "second"]).loc[("arf_v2", "bce")]
    assert same["mean_diff"] == 0.0 and math.isnan(same["pairs_needed"])
    # --effect replaces the observed difference; a smaller one needs more pairs.
    aimed = power_analysis(tables, PowerOptions(effect=0.002, baseline="bce"))
    assert list(aimed["first"]) == ["arf_v2", "lcron"]
    lcron = aimed.set_index("first").loc["lcron"]
    assert lcron["effect"] == 0.002
    assert lcron["pairs_needed"] == stats.seeds_needed(sd, 0.002) > needed
    table = power_table(aimed, PowerOptions(effect=0.002, baseline="bce"))
    assert "--effect 0.002" in " ".join(table.footnotes)
    cells = {row[0].text: [c.text for c in row] for row in table.rows}
    assert cells["lcron − bce"][-2] == str(stats.seeds_needed(sd, 0.002))
    assert cells["arf_v2 − bce"][-2] == str(stats.seeds_needed(0.0, 0.002))  # sd 0: 2 pairs


def test_power_command_prints_each_pair(pilot):
    result = runner.invoke(app, ["power", "--results-dir", str(pilot), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert "lcron − bce" in result.output and "pairs needed" in result.output
    assert "α = 0.05" in result.output and "power 80%" in result.output
    csv = runner.invoke(
        app,
        ["power", "--results-dir", str(pilot), "--format", "csv", "--baseline", "bce",
         "--power", "0.9", "--alpha", "0.01"],
    )  # fmt: skip
    assert csv.exit_code == 0, csv.output
    frame = pd.read_csv(io.StringIO(csv.output)).set_index("first")
    sd = DIFF.std(ddof=1)
    assert frame.loc["lcron", "mde"] == pytest.approx(reference_mde(sd, 6, 0.01, 0.9))
    assert frame.loc["lcron", "pairs_needed"] == stats.seeds_needed(sd, DIFF.mean(), 0.01, 0.9)
    terminal = runner.invoke(app, ["power", "--results-dir", str(pilot)])
    assert terminal.exit_code == 0 and "MDE" in terminal.output


def test_power_command_bad_input_names_the_option(pilot, tmp_path):
    def run(*args):
        return runner.invoke(app, ["power", "--results-dir", str(pilot), *args])

    assert "--power" in run("--power", "1.5").output
    assert "--alpha" in run("--alpha", "0").output
    assert "--effect" in run("--effect", "-0.01").output
    metric = run("--metric", "joint_recal")
    assert metric.exit_code == 2 and "Did you mean 'joint_recall'?" in metric.output
    baseline = run("--baseline", "lcrn")
    assert baseline.exit_code == 2 and "Did you mean 'lcron'?" in baseline.output
    assert run("--format", "html").exit_code == 2
    empty = runner.invoke(app, ["power", "--results-dir", str(tmp_path / "none")])
    assert empty.exit_code == 2 and "cascbench run" in empty.output
    help_text = runner.invoke(app, ["power", "--help"]).output
    assert "Examples" in help_text and "cascbench power --baseline" in help_text
