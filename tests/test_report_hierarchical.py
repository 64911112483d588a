"""World seeds as replicates: the hierarchical bootstrap against brute force, runs paired by
(world seed, training seed), per-request statistics that never pair requests across worlds, and
the verdicts (significant, inconclusive, not significant) of every comparison."""

import io
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
from cascbench.report.build import ReportOptions, build_findings, build_report
from cascbench.report.compare import (
    INCONCLUSIVE,
    NOT_SIGNIFICANT,
    SIGNIFICANTLY_BETTER,
    SIGNIFICANTLY_WORSE,
    UNTESTED,
    CompareOptions,
    compare,
    verdict,
)
from cascbench.report.findings import findings, method_pairs
from cascbench.report.loading import RunFiles
from cascbench.report.tables import runs_frame, summarize

runner = CliRunner()

# --- The hierarchical bootstrap ------------------------------------------------------------------


def brute_force_ci(values, clusters, resamples, confidence, seed):
    """The scheme written out with loops, reading the uniforms in the documented layout: per
    resample C cluster draws, then W member draws per drawn cluster (C clusters, W the largest)."""
    groups = [values[clusters == label] for label in sorted(set(clusters.tolist()))]
    count, width = len(groups), max(len(g) for g in groups)
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(resamples):
        uniforms = rng.random(count * (1 + width))
        drawn = []
        for slot in range(count):
            group = groups[int(uniforms[slot] * count)]
            for member in range(len(group)):
                drawn.append(group[int(uniforms[count + slot * width + member] * len(group))])
        means.append(sum(drawn) / len(drawn))
    tail = (1 - confidence) / 2 * 100
    return tuple(np.percentile(means, [tail, 100 - tail]))


def independent_ci(values, clusters, resamples, seed):
    """The same scheme with another generator usage (rng.choice): equal in distribution only."""
    groups = [values[clusters == label] for label in sorted(set(clusters.tolist()))]
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for index in range(resamples):
        picked = rng.choice(len(groups), size=len(groups))
        drawn = np.concatenate([rng.choice(groups[k], size=len(groups[k])) for k in picked])
        means[index] = drawn.mean()
    return tuple(np.percentile(means, [2.5, 97.5]))


UNBALANCED = np.repeat([7, 3, 11, 5], [3, 5, 1, 4])  # world seeds, 1 to 5 training seeds each


@pytest.mark.parametrize("chunk", [4_000_000, 70])
def test_hierarchical_bootstrap_matches_brute_force_draw_for_draw(chunk):
    values = np.random.default_rng(1).normal(0.01, 0.02, UNBALANCED.size)
    ours = stats.hierarchical_bootstrap_ci(
        values, UNBALANCED, resamples=400, confidence=0.9, seed=3, max_chunk_elements=chunk
    )
    expected = brute_force_ci(values, UNBALANCED, 400, 0.9, 3)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def test_hierarchical_bootstrap_matches_an_independent_implementation_in_distribution():
    rng = np.random.default_rng(2)
    clusters = np.repeat(np.arange(4), 6)
    values = rng.normal(0.0, 0.01, clusters.size) + np.repeat(rng.normal(0, 0.02, 4), 6)
    ours = stats.hierarchical_bootstrap_ci(values, clusters, resamples=20_000, seed=0)
    reference = independent_ci(values, clusters, 20_000, seed=1)
    # Two Monte Carlo estimates of the same quantiles; the CI is about 0.03 wide.
    np.testing.assert_allclose(ours, reference, atol=1.5e-3)


def test_one_cluster_is_the_ordinary_bootstrap_of_the_members():
    values = np.random.default_rng(4).normal(0.02, 0.05, 40)
    ours = stats.hierarchical_bootstrap_ci(values, np.zeros(40), resamples=3000, seed=5)
    # Draw for draw: the first uniform of each resample picks the only cluster, the next 40 the
    # members, ⌊u·40⌋: the ordinary bootstrap, vectorised by hand.
    uniforms = np.random.default_rng(5).random((3000, 41))
    means = values[(uniforms[:, 1:] * 40).astype(int)].mean(axis=1)
    np.testing.assert_allclose(ours, np.percentile(means, [2.5, 97.5]), atol=1e-12)
    # And in distribution, the ordinary bootstrap with other draws.
    (low,), (high,) = stats.bootstrap_mean_ci(values, resamples=20_000, seed=9)
    ours_many = stats.hierarchical_bootstrap_ci(values, np.zeros(40), resamples=20_000, seed=5)
    np.testing.assert_allclose(ours_many, (low, high), atol=2e-3)


def test_one_member_per_cluster_is_the_bootstrap_of_the_clusters():
    values = np.array([0.1, -0.3, 0.25, 0.05, 0.4])
    ours = stats.hierarchical_bootstrap_ci(values, np.arange(5), resamples=2000, seed=6)
    uniforms = np.random.default_rng(6).random((2000, 10))  # 5 cluster draws, 5 member draws
    means = values[(uniforms[:, :5] * 5).astype(int)].mean(axis=1)
    np.testing.assert_allclose(ours, np.percentile(means, [2.5, 97.5]), atol=1e-12)


def test_between_world_variance_widens_the_interval():
    """Three worlds whose differences sit at 0, 1 and 2: the mean is as uncertain as three
    numbers are, whatever the number of training seeds. Ignoring the worlds (one cluster)
    would treat the 30 pairs as independent and give an interval three times narrower."""
    noise = np.random.default_rng(7).normal(0, 0.01, 30)
    clusters = np.repeat([0, 1, 2], 10)
    values = clusters + noise
    low, high = stats.hierarchical_bootstrap_ci(values, clusters, resamples=5000, seed=0)
    naive_low, naive_high = stats.hierarchical_bootstrap_ci(values, np.zeros(30), seed=0)
    assert high - low > 2.5 * (naive_high - naive_low)
    # The bootstrap of three cluster means {0, 1, 2}: 27 equally likely draws, the extreme
    # means 0 and 2 have 1/27 > 2.5 % each, so they are the interval's ends (up to the noise).
    assert low == pytest.approx(0.0, abs=0.02) and high == pytest.approx(2.0, abs=0.02)


def test_hierarchical_bootstrap_invariances_and_degenerate_inputs():
    values = np.random.default_rng(8).normal(0, 1, UNBALANCED.size)
    base = stats.hierarchical_bootstrap_ci(values, UNBALANCED, resamples=500, seed=1)
    shifted = stats.hierarchical_bootstrap_ci(values + 0.25, UNBALANCED, resamples=500, seed=1)
    np.testing.assert_allclose(shifted, np.add(base, 0.25), atol=1e-12)
    # Labels only group: other labels in the same sorted order give the same draws.
    names = np.array([f"w{label:02d}" for label in UNBALANCED])
    assert stats.hierarchical_bootstrap_ci(values, names, resamples=500, seed=1) == base
    # NaN pairs are left out.
    with_nan = np.append(values, np.nan)
    labels = np.append(UNBALANCED, 3)
    assert stats.hierarchical_bootstrap_ci(with_nan, labels, resamples=500, seed=1) == base
    assert stats.hierarchical_bootstrap_ci(np.full(6, 0.01), np.repeat([0, 1], 3)) == (
        pytest.approx(0.01),
        pytest.approx(0.01),
    )
    assert all(math.isnan(x) for x in stats.hierarchical_bootstrap_ci(np.array([1.0]), [0]))
    with pytest.raises(ValueError, match="same length"):
        stats.hierarchical_bootstrap_ci(np.zeros(3), np.zeros(2))


# --- Verdicts ------------------------------------------------------------------------------------


def test_verdict_by_hand():
    assert verdict(0.01, 0.05, 0.02, 0.01) == SIGNIFICANTLY_BETTER
    assert verdict(0.01, 0.05, -0.02, 0.01) == SIGNIFICANTLY_WORSE
    assert verdict(0.30, 0.05, 0.004, 0.01) == INCONCLUSIVE
    assert verdict(0.30, 0.05, -0.004, 0.01) == INCONCLUSIVE
    assert verdict(0.06, 0.05, 0.02, 0.01) == NOT_SIGNIFICANT
    assert verdict(float("nan"), 0.05, 0.02, float("nan")) == UNTESTED
    assert verdict(0.01, 0.05, 0.0, 0.01) == INCONCLUSIVE  # p < α but no difference: no mark


# --- Runs on several world seeds -----------------------------------------------------------------

WORLD_SHIFT = {0: 0.00, 1: 0.05, 2: -0.04}  # each world is easier or harder, for every method
SEED_NOISE = {0: 0.002, 1: -0.001, 2: 0.0}
# lcron − bce per (world, seed): +0.010 on average, with a world-dependent part.
LCRON_GAIN = {(0, 0): 0.012, (0, 1): 0.009, (0, 2): 0.011, (1, 0): 0.004, (1, 1): 0.006,
              (1, 2): 0.005, (2, 0): 0.015, (2, 1): 0.016, (2, 2): 0.012}  # fmt: skip
# rankflow − bce: mean +0.0003, sd 0.002: far below what 9 pairs can see (MDE about 0.002).
RANKFLOW_GAIN = {(0, 0): 0.003, (0, 1): -0.002, (0, 2): 0.0007, (1, 0): -0.0015, (1, 1): 0.002,
                 (1, 2): -0.001, (2, 0): 0.0001, (2, 1): 0.0024, (2, 2): -0.001}  # fmt: skip


def joint(method, world, seed):
    value = 0.7 + WORLD_SHIFT[world] + SEED_NOISE[seed]
    if method == "lcron":
        value += LCRON_GAIN[(world, seed)]
    if method == "rankflow":
        value += RANKFLOW_GAIN[(world, seed)]
    return value


def requests(method, world, seed):
    """Ten requests with the same ids in every world: request r's value is the run's mean plus
    a world-specific offset, so that a pairing across worlds would be visible."""
    offsets = np.linspace(-0.05, 0.05, 10) * (1 + world)
    if method == "lcron":
        offsets = offsets[::-1]
    values = joint(method, world, seed) + offsets
    frame = pd.DataFrame({"request_id": np.arange(10)})
    for name in ("joint_recall", "recall/ranking", "ndcg/ranking", "recall/retrieval"):
        frame[name] = values
    frame["ndcg/retrieval"] = values
    return frame


@pytest.fixture(scope="module")
def worlds_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("worlds")
    for method in ("bce", "rankflow", "lcron"):
        for world in WORLD_SHIFT:
            for seed in SEED_NOISE:
                value = joint(method, world, seed)
                write_run(
                    root,
                    method,
                    seed,
                    two_stage_metrics(value),
                    world_seed=world,
                    per_request=requests(method, world, seed),
                )
    return root


@pytest.fixture(scope="module")
def worlds_frame(worlds_store):
    return runs_frame(ResultStore(worlds_store).finished_runs())


def arrays(method, other):
    keys = [(w, s) for w in WORLD_SHIFT for s in SEED_NOISE]
    return np.array([joint(method, *k) for k in keys]), np.array([joint(other, *k) for k in keys])


def test_world_seeds_share_one_table_and_count_as_replicates(worlds_frame):
    assert sorted(worlds_frame["world_seed"].unique()) == [0, 1, 2]
    (table,) = summarize(worlds_frame, ["joint_recall"])
    assert table.dataset == "synthetic:tiny" and "@" not in table.title
    assert table.n_worlds == 3
    lcron, _ = arrays("lcron", "bce")
    assert table.n.at["lcron", "joint_recall"] == 9
    assert table.mean.at["lcron", "joint_recall"] == pytest.approx(lcron.mean())
    assert table.std.at["lcron", "joint_recall"] == pytest.approx(lcron.std(ddof=1))
    replicates = table.per_replicate("joint_recall")
    assert list(replicates.columns) == [(w, s) for w in WORLD_SHIFT for s in SEED_NOISE]


def test_comparisons_pair_runs_by_world_and_training_seed(worlds_frame):
    (table,) = summarize(worlds_frame, ["joint_recall"])
    options = CompareOptions(baseline="bce", pair_resamples=2000)
    result = compare(table, options).xs("joint_recall", level="metric")
    lcron, bce = arrays("lcron", "bce")
    row = result.loc["lcron"]
    reference = scipy_stats.ttest_rel(lcron, bce)
    assert (row["n_pairs"], row["n_worlds"]) == (9, 3)
    assert row["mean_diff"] == pytest.approx((lcron - bce).mean())
    assert row["sd_diff"] == pytest.approx((lcron - bce).std(ddof=1))
    assert row["statistic"] == pytest.approx(reference.statistic)
    assert row["p_value"] == pytest.approx(reference.pvalue)
    # The world shifts cancel only within a world: pairing runs of one training seed across
    # worlds would keep them in the differences, and see nothing.
    assert row["p_value"] < 1e-3
    assert scipy_stats.ttest_rel(np.roll(lcron, 3), bce).pvalue > 0.1
    expected_ci = stats.hierarchical_bootstrap_ci(
        lcron - bce, np.repeat([0, 1, 2], 3), resamples=2000, seed=0
    )
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(expected_ci)
    t = scipy_stats.t
    mde = (t.ppf(0.975, 8) + t.ppf(0.8, 8)) * (lcron - bce).std(ddof=1) / 3
    assert row["mde"] == pytest.approx(mde)
    assert row["verdict"] == SIGNIFICANTLY_BETTER and row["mark"] == "†"
    tiny = result.loc["rankflow"]
    assert abs(tiny["mean_diff"]) < tiny["mde"] and tiny["p_holm"] > 0.05
    assert tiny["verdict"] == INCONCLUSIVE and tiny["mark"] == ""


def test_world_seed_labels_change_no_number(tmp_path):
    """The same runs on world seed 0 and on world seed 4 give the same statistics: the seed is
    a label of the replicate, and a single world keeps every number of the earlier reports."""
    for world in (0, 4):
        for seed in range(3):
            for method, base in (("bce", 0.70), ("lcron", 0.72)):
                metrics = two_stage_metrics(base + 0.003 * seed * (method == "lcron"))
                write_run(tmp_path / str(world), method, seed, metrics, world_seed=world)
    options = ReportOptions(compare=CompareOptions(resamples=0, pair_resamples=500))
    cells = [
        build_report(runs_frame(ResultStore(tmp_path / str(w)).finished_runs()), options).cells
        for w in (0, 4)
    ]
    pd.testing.assert_frame_equal(cells[0], cells[1])
    assert (cells[0]["dataset"] == "synthetic:tiny").all()


def test_per_request_statistics_never_pair_requests_across_worlds(worlds_store, worlds_frame):
    (table,) = summarize(worlds_frame, ["joint_recall"])
    options = CompareOptions(baseline="bce", resamples=200, pair_resamples=200)
    load = RunFiles(ResultStore(worlds_store)).per_request
    row = compare(table, options, load).loc[("lcron", "joint_recall")]
    # lcron − bce on request r of world w: the seed-averaged run difference plus the reversed
    # offsets minus the offsets. 10 requests × 3 worlds, stacked.
    expected = []
    for world in WORLD_SHIFT:
        offsets = np.linspace(-0.05, 0.05, 10) * (1 + world)
        gain = np.mean([LCRON_GAIN[(world, s)] for s in SEED_NOISE])
        expected.append(gain + offsets[::-1] - offsets)
    expected = np.concatenate(expected)
    assert row["n_requests"] == 30
    assert row["request_diff"] == pytest.approx(expected.mean())
    assert row["effect_size"] == pytest.approx(expected.mean() / expected.std(ddof=1))
    wins = int((expected > 1e-9).sum())
    assert (row["wins"], row["losses"]) == (wins, 30 - wins)


def test_report_states_worlds_pairs_test_alpha_and_mde(worlds_store, tmp_path):
    path = tmp_path / "report.md"
    result = runner.invoke(
        app,
        ["report", "--results-dir", str(worlds_store), "--format", "markdown", "--output",
         str(path), "--bootstrap", "50", "--baseline", "bce"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert "n = 9 pairs, 3 world seeds" in text
    assert "3 world seeds × training seeds" in text
    assert "paired t-test" in text and "α = 0.05" in text and "Minimum detectable effect" in text
    assert "conditional on the trained models" in text and "MDE (80% power)" in text
    assert "| lcron | bce | 9 |" in text and "significantly better" in text
    assert "inconclusive" in text
    csv = runner.invoke(
        app, ["report", "--results-dir", str(worlds_store), "--format", "csv", "--bootstrap", "0"]
    )
    cells = pd.read_csv(io.StringIO(csv.output))
    for column in ("n_pairs", "n_worlds", "mde", "verdict", "test", "alpha", "power",
                   "ci_low", "ci_high", "conditional_ci_low", "conditional_ci_high"):  # fmt: skip
        assert column in cells.columns
    assert set(cells["test"]) == {"paired t-test"} and set(cells["alpha"]) == {0.05}


def test_duplicate_runs_of_one_replicate_are_named_with_their_world(tmp_path):
    for world in (0, 1):
        for seed in (0, 1):
            write_run(tmp_path, "bce", seed, two_stage_metrics(0.7), world_seed=world)
            write_run(tmp_path, "lcron", seed, two_stage_metrics(0.72), world_seed=world)
    write_run(tmp_path, "bce", 1, two_stage_metrics(0.71), world_seed=1, train={"kendall": True})
    frame = runs_frame(ResultStore(tmp_path).finished_runs())
    # Pretend the Kendall run is an older run of the same configuration.
    frame = frame.assign(**{"train.kendall": False})
    report = build_report(frame, ReportOptions(compare=CompareOptions(resamples=0)))
    assert any("world seed 1 and seed 1" in note for note in report.notes)


# --- The findings view ---------------------------------------------------------------------------


def test_method_pairs_follow_the_row_order():
    assert method_pairs(["bce", "rankflow", "lcron"]) == [
        ("rankflow", "bce"),
        ("lcron", "bce"),
        ("lcron", "rankflow"),
    ]
    assert method_pairs(["bce", "rankflow", "lcron"], "bce") == [
        ("rankflow", "bce"),
        ("lcron", "bce"),
    ]
    assert method_pairs(["bce", "lcron"], "icc") == []


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory):
    """lcron − bce is +0.02 on the tiny world and −0.02 on the small one; rankflow − bce is
    below the noise on both."""
    root = tmp_path_factory.mktemp("findings")
    noise = [0.001, -0.002, 0.0015, -0.0005, 0.0]
    for world, sign in (("tiny", 1), ("small", -1)):
        for seed, shared in enumerate(noise):
            base = 0.7 + 0.01 * shared * 100
            write_run(root, "bce", seed, two_stage_metrics(base), world=world)
            lcron = base + sign * 0.02 + shared / 5
            write_run(root, "lcron", seed, two_stage_metrics(lcron), world=world)
            rankflow = base + (0.0005 if seed % 2 else -0.0003)
            write_run(root, "rankflow", seed, two_stage_metrics(rankflow), world=world)
    return runs_frame(ResultStore(root).finished_runs())


def test_findings_say_where_a_pair_differs_and_in_which_direction(two_datasets):
    options = CompareOptions(pair_resamples=500)
    frame = findings(summarize(two_datasets, ["joint_recall"]), "joint_recall", options)
    by_key = frame.set_index(["pair", "table"])
    assert by_key.loc[("lcron − bce", "synthetic:tiny"), "verdict"] == SIGNIFICANTLY_BETTER
    assert by_key.loc[("lcron − bce", "synthetic:small"), "verdict"] == SIGNIFICANTLY_WORSE
    assert by_key.loc[("rankflow − bce", "synthetic:tiny"), "verdict"] == INCONCLUSIVE
    # Holm's family: the three pairs of each table.
    tiny = frame[frame["table"] == "synthetic:tiny"]
    np.testing.assert_allclose(tiny["p_holm"], stats.holm(tiny["p_value"].to_numpy()))
    report = build_findings(two_datasets, ReportOptions(metrics=["joint_recall"], compare=options))
    (table,) = report.tables
    assert table.header == ["pair", "synthetic:small", "synthetic:tiny", "summary"]
    rows = {row[0].text: [c.text for c in row[1:]] for row in table.rows}
    assert rows["lcron − bce"][0].endswith("‡") and rows["lcron − bce"][1].endswith("†")
    assert rows["lcron − bce"][2] == "better in 1, worse in 1 (of 2)"
    assert rows["rankflow − bce"][2] == "inconclusive in 2 (of 2)"
    notes = " ".join(table.footnotes)
    assert "n = 5 pairs (1 world seed)" in notes and "α = 0.05" in notes and "MDE" in notes


def test_findings_from_the_command_line(tmp_path):
    root = tmp_path
    for world in ("tiny", "small"):
        for seed in range(3):
            write_run(root, "bce", seed, two_stage_metrics(0.7 + 0.001 * seed), world=world)
            write_run(root, "lcron", seed, two_stage_metrics(0.75 + 0.002 * seed), world=world)
    result = runner.invoke(
        app, ["report", "--results-dir", str(root), "--findings", "--format", "markdown"]
    )
    assert result.exit_code == 0, result.output
    assert "Findings on joint_recall" in result.output and "lcron − bce" in result.output
    assert "synthetic:small" in result.output and "synthetic:tiny" in result.output
    bad = runner.invoke(app, ["report", "--results-dir", str(root), "--findings",
                              "--baseline", "lcrn"])  # fmt: skip
    assert bad.exit_code == 2 and "Did you mean 'lcron'?" in bad.output
