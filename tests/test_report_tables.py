"""Tables on hand-made runs whose bold, underline, marks and Improv. row are known in advance;
every output format written and parsed back."""

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from report_runs import two_stage_metrics, write_run
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from typer.testing import CliRunner

from cascbench.cli import app
from cascbench.experiment.store import ResultStore
from cascbench.models.config import CLEAN_MODEL
from cascbench.report.build import ReportOptions, build_report, published_numbers
from cascbench.report.compare import CompareOptions, compare
from cascbench.report.loading import RunFiles
from cascbench.report.tables import SummaryTable, runs_frame, summarize, variant_order

runner = CliRunner()

SEED_NOISE = np.array([0.001, -0.001, 0.002, -0.002, 0.0])  # shared by every method of a seed
# joint recall per method and seed: lcron best by 0.01 with tiny paired noise, rankflow second,
# arf close to lcron on average but so noisy across seeds that the paired test cannot tell.
JOINT = {
    "lcron": 0.800 + SEED_NOISE + [0.0002, -0.0001, 0.0001, -0.0002, 0.0],
    "rankflow": 0.790 + SEED_NOISE + [0.0001, 0.0, -0.0001, 0.0002, -0.0002],
    "bce": 0.700 + SEED_NOISE,
    "arf": 0.785 + SEED_NOISE + [0.02, -0.02, 0.015, -0.015, 0.0],
}
# ndcg/ranking: bce best, lcron second: lcron's Improv. is negative there.
NDCG = {"bce": 0.60, "lcron": 0.59, "rankflow": 0.58, "arf": 0.57}
NDCG_NOISE = np.array([0.0003, -0.0002, 0.0001, 0.0, -0.0002])
N_REQUESTS = 50


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def per_request_frame(method, seed, joint, rng):
    """50 requests in shuffled order; lcron − bce per request is +0.1 on requests 0-29, 0 on
    30-39, −0.1 on 40-49 (in every seed), and request 7 is skipped (NaN) in seed 2 for lcron."""
    base = np.linspace(0.5, 0.9, N_REQUESTS)
    effect = np.zeros(N_REQUESTS)
    if method == "lcron":
        effect[:30], effect[40:] = 0.1, -0.1
    values = base + effect + (joint - base.mean() - effect.mean())
    if method == "lcron" and seed == 2:
        values[7] = np.nan
    order = rng.permutation(N_REQUESTS)
    frame = pd.DataFrame({"request_id": order + 1000})
    for name in (
        "joint_recall",
        "recall/ranking",
        "ndcg/ranking",
        "recall/retrieval",
        "ndcg/retrieval",
    ):
        frame[name] = values[order]
    frame["survival/retrieval"] = 0.9
    frame["survival/ranking"] = values[order]
    return frame


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("hand_made")
    rng = np.random.default_rng(0)
    for method, joint in JOINT.items():
        for seed in range(5):
            metrics = two_stage_metrics(joint[seed], ndcg__ranking=NDCG[method] + NDCG_NOISE[seed])
            per_request = per_request_frame(method, seed, joint[seed], rng)
            write_run(root, method, seed, metrics, per_request=per_request)
    return root


@pytest.fixture(scope="module")
def report(store):
    result_store = ResultStore(store)
    frame = runs_frame(result_store.finished_runs())
    return build_report(frame, ReportOptions(), RunFiles(result_store).per_request)


def main_rows(report):
    table = report.tables[0]
    return {row[0].text: dict(zip(table.header, row, strict=True)) for row in table.rows}


def test_bold_underline_marks_and_improv_row_are_the_known_ones(report):
    rows = main_rows(report)
    assert list(rows) == ["bce", "rankflow", "arf", "lcron", "Improv."]  # the paper's order
    joint = {m: rows[m]["joint_recall"] for m in JOINT}
    assert joint["lcron"].bold and not joint["lcron"].underline and joint["lcron"].mark == "†"
    assert joint["rankflow"].underline and joint["rankflow"].mark == "‡"
    assert joint["bce"].mark == "‡" and not joint["bce"].bold
    assert joint["arf"].mark == "" and not (joint["arf"].bold or joint["arf"].underline)
    ndcg = {m: rows[m]["ndcg/ranking"] for m in NDCG}
    assert ndcg["bce"].bold and ndcg["bce"].mark == "†"
    assert ndcg["lcron"].underline and ndcg["lcron"].mark == "‡"
    # Improv. = (lcron − best other) / best other: (0.800 − 0.790) / 0.790 and (0.59 − 0.60) / 0.60.
    assert rows["Improv."]["joint_recall"].text == "+1.27%"
    assert rows["Improv."]["ndcg/ranking"].text == "-1.67%"
    assert rows["lcron"]["joint_recall"].text == f"0.8000 ± {np.std(JOINT['lcron'], ddof=1):.4f}"
    assert rows["lcron"]["n"].text == "5"


def test_marks_come_from_holm_adjusted_paired_t_tests(report):
    cells = report.cells.set_index(["method", "metric"])
    joint = cells.xs("joint_recall", level="metric")
    assert joint.loc["lcron", "baseline"] == "rankflow"
    for method in ("bce", "rankflow", "arf"):
        assert joint.loc[method, "baseline"] == "lcron"
    # The family: the three distinct pairs tested on joint recall.
    pairs = [("arf", "lcron"), ("bce", "lcron"), ("lcron", "rankflow")]
    p = [scipy_stats.ttest_rel(JOINT[a], JOINT[b]).pvalue for a, b in pairs]
    adjusted = multipletests(p, method="holm")[1]
    for (first, _), expected in zip(pairs, adjusted, strict=True):
        assert joint.loc[first, "p_holm"] == pytest.approx(expected)
    assert joint.loc["rankflow", "p_holm"] == joint.loc["lcron", "p_holm"]  # one pair, tested once
    statistic = scipy_stats.ttest_rel(JOINT["bce"], JOINT["lcron"]).statistic
    assert joint.loc["bce", "statistic"] == pytest.approx(statistic)
    assert joint.loc["lcron", "n_pairs"] == 5


def test_per_request_statistics_pair_requests_by_id_across_shuffled_files(report):
    cells = report.cells.set_index(["method", "metric"])
    bce = cells.loc[("bce", "joint_recall")]
    assert bce["baseline"] == "lcron"
    # bce − lcron on request r: −effect[r] + (bce's − lcron's run mean) + mean(effect), with
    # effect = +0.1 on requests 0-29, 0 on 30-39, −0.1 on 40-49 (mean 0.04). Request 7 is NaN in
    # one seed of lcron: left out. Files list requests in different orders: pairing by position
    # instead of request id would scramble these counts.
    effect = np.r_[np.full(30, 0.1), np.zeros(10), np.full(10, -0.1)]
    expected = np.delete(-effect + (JOINT["bce"] - JOINT["lcron"]).mean() + 0.04, 7)
    assert bce["n_requests"] == 49
    assert (bce["wins"], bce["ties"], bce["losses"]) == (10, 0, 39)
    assert bce["request_diff"] == pytest.approx(expected.mean())
    assert bce["effect_size"] == pytest.approx(expected.mean() / expected.std(ddof=1))
    assert bce["conditional_ci_low"] < expected.mean() < bce["conditional_ci_high"]


def test_per_request_differences_by_hand():
    """One method pair, two seeds, three requests in different orders per file."""
    runs = pd.DataFrame(
        {
            "variant": ["a", "a", "b", "b"],
            "method": ["a", "a", "b", "b"],
            "method_params": ["{}"] * 4,
            "world_seed": [0] * 4,
            "seed": [0, 1, 0, 1],
            "run_id": ["a0", "a1", "b0", "b1"],
            "m": [0.5, 0.6, 0.4, 0.4],
        }
    )
    files = {
        "a0": pd.DataFrame({"request_id": [1, 2, 3], "m": [1.0, 0.5, 0.0]}),
        "a1": pd.DataFrame({"request_id": [3, 1, 2], "m": [0.0, 1.0, 0.8]}),
        "b0": pd.DataFrame({"request_id": [2, 3, 1], "m": [0.5, 0.2, 0.4]}),
        "b1": pd.DataFrame({"request_id": [1, 2, 3], "m": [0.4, 0.5, 0.2]}),
    }
    grouped = runs.groupby("variant")["m"]
    table = SummaryTable(
        "s",
        "d",
        grouped.mean().to_frame(),
        grouped.std().to_frame(),
        grouped.count().to_frame(),
        runs,
    )
    result = compare(
        table,
        CompareOptions(resamples=200),
        lambda run_id, cols: files[run_id][["request_id", *cols]],
    )
    row = result.loc[("a", "m")]
    # a − b per request, seed 0: [0.6, 0.0, −0.2]; seed 1: [0.6, 0.3, −0.2]; mean: [0.6, 0.15, −0.2].
    diffs = np.array([0.6, 0.15, -0.2])
    assert row["request_diff"] == pytest.approx(diffs.mean())
    assert row["effect_size"] == pytest.approx(diffs.mean() / diffs.std(ddof=1))
    assert (row["wins"], row["ties"], row["losses"]) == (2, 0, 1)
    assert row["n_requests"] == 3
    low, high = row["conditional_ci_low"], row["conditional_ci_high"]
    assert -0.2 - 1e-12 <= low <= row["request_diff"] <= high <= 0.6 + 1e-12
    flipped = result.loc[("b", "m")]
    assert flipped["request_diff"] == pytest.approx(-row["request_diff"])
    assert (flipped["conditional_ci_low"], flipped["conditional_ci_high"]) == pytest.approx(
        (-high, -low)
    )
    assert (flipped["wins"], flipped["losses"]) == (1, 2)


def test_fixed_baseline_and_single_seed(store, tmp_path):
    frame = runs_frame(ResultStore(store).finished_runs())
    report = build_report(frame, ReportOptions(compare=CompareOptions(baseline="bce", resamples=0)))
    rows = main_rows(report)
    assert "bce (baseline)" in rows
    assert rows["lcron"]["joint_recall"].mark == "†"
    assert rows["arf"]["joint_recall"].mark == "†"  # arf − bce ≈ 0.085, noisy but far from 0
    single = build_report(
        frame[frame["seed"] == 0], ReportOptions(compare=CompareOptions(resamples=0))
    )
    cells = single.cells
    assert cells["p_value"].isna().all() and (cells["mark"].fillna("") == "").all()
    assert any("n/a" in note for note in single.tables[0].footnotes)


def test_wilcoxon_option_says_when_no_mark_is_possible(store):
    frame = runs_frame(ResultStore(store).finished_runs())
    options = ReportOptions(compare=CompareOptions(test="wilcoxon", resamples=0))
    report = build_report(frame, options)
    assert (report.cells["mark"].fillna("") == "").all()
    notes = " ".join(report.tables[0].footnotes)
    assert "Wilcoxon" in notes and "0.0625" in notes


def parse_markdown_table(text, title_part):
    """The rows of the Markdown table whose title contains `title_part`: lists of cell strings."""
    block = text.split("**")  # titles are **bold** lines
    start = next(i for i, part in enumerate(block) if title_part in part)
    lines = "**".join(block[start + 1 :]).strip().splitlines()
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows[0], rows[2:]


def test_markdown_written_and_parsed_back(store, tmp_path):
    path = tmp_path / "table.md"
    result = invoke("report", "--results-dir", store, "--format", "markdown", "--output", path)
    assert result.exit_code == 0, result.output
    header, rows = parse_markdown_table(path.read_text(), "mean ± std over seeds")
    assert header == [
        "method",
        "n",
        "joint_recall",
        "recall/ranking",
        "ndcg/ranking",
        "recall/retrieval",
        "ndcg/retrieval",
    ]
    cells = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert re.fullmatch(r"\*\*0\.8000 ± 0\.\d{4}\*\*†", cells["lcron"]["joint_recall"])
    assert re.fullmatch(r"<u>0\.7900 ± 0\.\d{4}</u>‡", cells["rankflow"]["joint_recall"])
    assert re.fullmatch(r"0\.7850 ± 0\.\d{4}", cells["arf"]["joint_recall"])
    assert cells["Improv."]["joint_recall"] == "+1.27%"
    text = path.read_text()
    assert "paired t-test" in text and "α = 0.05" in text and "Holm" in text and "n = 5" in text
    _, detail = parse_markdown_table(text, "each method against its baseline")
    assert [row[0] for row in detail] == ["bce", "rankflow", "arf", "lcron"]


def parse_latex_rows(text):
    """Rows of the first tabular: cell strings, split on unescaped &."""
    body = text.split(r"\midrule", 1)[1].split(r"\bottomrule", 1)[0]
    rows = []
    for line in body.strip().splitlines():
        if line.strip() == r"\midrule":
            continue
        assert line.endswith(r" \\")
        rows.append([c.strip() for c in re.split(r"(?<!\\)&", line[: -len(r" \\")])])
    return rows


def test_latex_written_and_parsed_back(store, tmp_path):
    path = tmp_path / "table.tex"
    result = invoke("report", "--results-dir", store, "--format", "latex", "--output", path)
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert text.count(r"\begin{table}") == text.count(r"\end{table}") == 2
    assert text.count("{") == text.count("}") + text.count(r"\}") - text.count(r"\{")
    header_line = text.split(r"\toprule", 1)[1].split(r"\midrule", 1)[0].strip()
    header = [c.strip() for c in header_line.removesuffix(r"\\").split("&")]
    assert header[:3] == ["method", "n", r"joint\_recall"]
    rows = {row[0]: row for row in parse_latex_rows(text)}
    assert all(len(row) == len(header) for row in rows.values())
    assert re.fullmatch(
        r"\\textbf\{0\.8000 \$\\pm\$ 0\.\d{4}\}\$\^\{\\dagger\}\$", rows["lcron"][2]
    )
    assert re.fullmatch(
        r"\\underline\{0\.7900 \$\\pm\$ 0\.\d{4}\}\$\^\{\\ddagger\}\$", rows["rankflow"][2]
    )
    assert rows["Improv."][2] == r"+1.27\%" and rows["Improv."][4] == r"$-$1.67\%"
    assert all(ord(c) < 128 for c in text)  # pdflatex-safe


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_standalone_compiles_with_pdflatex(store, tmp_path):
    path = tmp_path / "table.tex"
    result = invoke(
        "report", "--results-dir", store, "--format", "latex", "--standalone", "--output", path
    )
    assert result.exit_code == 0, result.output
    compiled = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", path.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert compiled.returncode == 0, compiled.stdout[-3000:]
    assert (tmp_path / "table.pdf").stat().st_size > 0


def test_csv_written_and_parsed_back(store, tmp_path):
    path = tmp_path / "cells.csv"
    result = invoke("report", "--results-dir", store, "--format", "csv", "--output", path)
    assert result.exit_code == 0, result.output
    cells = pd.read_csv(path, keep_default_na=False, na_values=[""])
    assert list(cells.columns[:7]) == ["setting", "dataset", "method", "metric", "mean", "std", "n"]
    assert len(cells) == 4 * 5
    indexed = cells.set_index(["method", "metric"])
    assert indexed.loc[("lcron", "joint_recall"), "mean"] == pytest.approx(JOINT["lcron"].mean())
    assert indexed.loc[("lcron", "joint_recall"), "std"] == pytest.approx(
        np.std(JOINT["lcron"], ddof=1)
    )
    assert indexed.loc[("lcron", "joint_recall"), "mark"] == "†"
    assert indexed.loc[("rankflow", "joint_recall"), "rank"] == 2
    assert indexed.loc[("lcron", "joint_recall"), "improvement"] == pytest.approx(0.01 / 0.79)
    assert (
        indexed.loc[("bce", "joint_recall"), "improvement"]
        != indexed.loc[("bce", "joint_recall"), "improvement"]
    )


def test_terminal_table_shows_marks_and_footnotes(store):
    result = invoke("report", "--results-dir", store, "--bootstrap", "100")
    assert result.exit_code == 0, result.output
    assert "†" in result.output and "‡" in result.output and "Improv." in result.output
    assert "paired t-test" in result.output


def test_bad_input_says_what_is_there_and_what_to_pass(store, tmp_path):
    missing = invoke("report", "--results-dir", tmp_path / "nothing")
    assert missing.exit_code == 2 and "cascbench run" in missing.output
    (tmp_path / "empty" / "runs" / "unfinished").mkdir(parents=True)
    empty = invoke("report", "--results-dir", tmp_path / "empty")
    assert empty.exit_code == 2 and "no finished run" in empty.output
    baseline = invoke("report", "--results-dir", store, "--baseline", "rankflo")
    assert baseline.exit_code == 2 and "Did you mean 'rankflow'?" in baseline.output
    assert "lcron" in baseline.output
    metric = invoke("report", "--results-dir", store, "--metrics", "joint_recal")
    assert metric.exit_code == 2 and "Did you mean 'joint_recall'?" in metric.output
    for option, value in (("--test", "anova"), ("--format", "html"), ("--alpha", "1.5")):
        assert invoke("report", "--results-dir", store, option, value).exit_code == 2


def test_mixed_settings_need_setting(tmp_path):
    write_run(tmp_path, "bce", 0, two_stage_metrics(0.7))
    three = {"joint_recall": 0.6, "recall/ranking": 0.6, "ndcg/ranking": 0.5, "recall/prerank": 0.8,
             "ndcg/prerank": 0.5, "recall/retrieval": 0.9, "ndcg/retrieval": 0.5}  # fmt: skip
    write_run(tmp_path, "bce", 0, three, setting="recflow-3stage")
    result = invoke("report", "--results-dir", tmp_path)
    assert result.exit_code == 2
    assert "recflow-2stage (1 runs)" in result.output and "recflow-3stage (1 runs)" in result.output
    assert "--setting" in result.output
    chosen = invoke(
        "report", "--results-dir", tmp_path, "--setting", "recflow-3stage", "--format", "markdown"
    )
    assert chosen.exit_code == 0, chosen.output
    assert "recall/prerank" in chosen.output and "ndcg/prerank" in chosen.output


def test_variants_of_a_method_are_ordered_by_their_numbers_not_their_spelling():
    labels = ["lcron[tau=1000.0]", "lcron[tau=20.0]", "lcron", "lcron[tau=1.0]", "bce"]
    labels += ["lcron[tau=100.0]", "lcron[tau=1e-3]"]
    methods = {label: label.split("[")[0] for label in labels}
    assert variant_order(labels, methods) == [
        "bce",
        "lcron",
        "lcron[tau=1e-3]",
        "lcron[tau=1.0]",
        "lcron[tau=20.0]",
        "lcron[tau=100.0]",
        "lcron[tau=1000.0]",
    ]


def test_stage_model_options_split_tables_like_training_fields(tmp_path):
    """Runs of the reference models and of a clean option are never averaged into one row."""
    for seed in range(2):
        write_run(tmp_path, "bce", seed, two_stage_metrics(0.70 + 0.01 * seed))
        write_run(
            tmp_path,
            "bce",
            seed,
            two_stage_metrics(0.80 + 0.01 * seed),
            model={"embedding_init": "small"},
        )
    tables = summarize(runs_frame(ResultStore(tmp_path).finished_runs()), ["joint_recall"])
    by_title = {t.title: t for t in tables}
    assert sorted(by_title) == [
        "recflow-2stage on synthetic:tiny",
        "recflow-2stage on synthetic:tiny (embedding_init=small)",
    ]
    reference = by_title["recflow-2stage on synthetic:tiny"]
    assert reference.n.loc["bce", "joint_recall"] == 2
    assert reference.mean.loc["bce", "joint_recall"] == pytest.approx(0.705)


def test_runs_stored_before_the_model_section_read_as_the_clean_options(tmp_path):
    """A config.json without `model` and `train.drop_last` (written by an earlier version) keeps
    its id and is reported with the options that reproduce it, not as a reference run."""
    run_id = write_run(
        tmp_path,
        "bce",
        0,
        two_stage_metrics(0.7),
        train={"drop_last": False},
        model=dict(CLEAN_MODEL),
    )
    config_file = ResultStore(tmp_path).run_dir(run_id) / "config.json"
    config = json.loads(config_file.read_text())
    del config["model"], config["train"]["drop_last"]
    config_file.write_text(json.dumps(config))
    (entry,) = ResultStore(tmp_path).entries()
    assert entry.state == "done"  # its id is what this version computes for its config
    (table,) = summarize(runs_frame(ResultStore(tmp_path).finished_runs()), ["joint_recall"])
    assert "embedding_init=small" in table.title and "drop_last=False" in table.title


def test_verdicts_and_mde_on_the_hand_made_runs(report):
    cells = report.cells.set_index(["method", "metric"]).xs("joint_recall", level="metric")
    t = scipy_stats.t
    for method in ("bce", "rankflow", "arf"):
        diff = JOINT[method] - JOINT["lcron"]
        mde = (t.ppf(0.975, 4) + t.ppf(0.8, 4)) * diff.std(ddof=1) / np.sqrt(5)
        assert cells.loc[method, "mde"] == pytest.approx(mde)
        assert cells.loc[method, "sd_diff"] == pytest.approx(diff.std(ddof=1))
        assert cells.loc[method, "n_worlds"] == 1
    assert cells.loc["bce", "verdict"] == "significantly worse"
    assert cells.loc["lcron", "verdict"] == "significantly better"
    # arf − lcron = −0.015 with seed noise of ±0.02: not significant, and below its MDE (0.029).
    assert abs(cells.loc["arf", "mean_diff"]) < cells.loc["arf", "mde"]
    assert cells.loc["arf", "verdict"] == "inconclusive" and cells.loc["arf", "mark"] == ""
    marked = cells["mark"].fillna("") != ""
    assert (marked == cells["verdict"].str.startswith("significantly")).all()


def test_the_conditional_per_request_interval_never_makes_a_mark(tmp_path):
    """Every request gains exactly +0.01 in every seed (a per-request CI of [0.01, 0.01]), yet
    the run means disagree across seeds: no mark, no significant verdict."""
    gains = [0.03, -0.02, 0.0]
    for seed, gain in enumerate(gains):
        for method, shift in (("bce", 0.0), ("lcron", gain)):
            per_request = pd.DataFrame({"request_id": np.arange(40)})
            for name in ("joint_recall", "recall/ranking", "ndcg/ranking", "recall/retrieval",
                         "ndcg/retrieval"):  # fmt: skip
                per_request[name] = np.linspace(0.5, 0.9, 40) + (0.01 if method == "lcron" else 0)
            write_run(
                tmp_path, method, seed, two_stage_metrics(0.7 + shift), per_request=per_request
            )
    store = ResultStore(tmp_path)
    frame = runs_frame(store.finished_runs())
    report = build_report(frame, ReportOptions(), RunFiles(store).per_request)
    row = report.cells.set_index(["method", "metric"]).loc[("lcron", "joint_recall")]
    assert row["conditional_ci_low"] == pytest.approx(0.01)
    assert row["conditional_ci_high"] == pytest.approx(0.01)
    assert row["mark"] == "" and not row["verdict"].startswith("significantly")
    main = main_rows(report)
    assert main["lcron"]["joint_recall"].mark == ""
    detail = next(t for t in report.tables if "against its baseline" in t.title)
    assert any("conditional on the trained models" in h for h in detail.header)
    assert any("never drives a mark" in note for note in detail.footnotes)


def tuned(tmp_path, runs):
    """Write (method, params, train, joint) for seeds 0 and 1; return the summary tables."""
    for method, params, train, joint in runs:
        for seed in (0, 1):
            metrics = two_stage_metrics(joint + 0.001 * seed)
            write_run(tmp_path, method, seed, metrics, params=params, train=train)
    return summarize(runs_frame(ResultStore(tmp_path).finished_runs()), ["joint_recall"])


def test_training_fields_set_per_variant_join_the_row_label(tmp_path):
    """A tuned table: each method at its own lr and batch size shares one table."""
    tables = tuned(
        tmp_path,
        [
            ("bce", {}, {"lr": 0.02}, 0.70),
            ("rankflow", {}, {}, 0.72),
            ("lcron", {"tau": 12.3}, {"lr": 0.0123, "batch_size": 512}, 0.75),
        ],
    )
    (table,) = tables
    assert table.title == "recflow-2stage on synthetic:tiny"
    assert table.variants == [
        "bce[lr=0.02]",
        "rankflow",
        "lcron[tau=12.3; lr=0.0123, batch_size=512]",
    ]
    assert table.mean.at["lcron[tau=12.3; lr=0.0123, batch_size=512]", "joint_recall"] == (
        pytest.approx(0.7505)
    )
    assert table.variant_train["bce[lr=0.02]"] == {"lr": 0.02, "batch_size": 1024}
    assert table.train_config("rankflow")["lr"] == 0.01
    assert table.train_config("lcron[tau=12.3; lr=0.0123, batch_size=512]")["batch_size"] == 512
    assert isinstance(table.variant_train["rankflow"]["batch_size"], int | np.integer)


def test_fields_that_vary_within_a_variant_still_split_the_tables(tmp_path):
    """An lr grid for every method splits by lr; a batch size per method joins the labels."""
    tables = tuned(
        tmp_path,
        [
            ("bce", {}, {"lr": 0.001, "batch_size": 512}, 0.70),
            ("bce", {}, {"lr": 0.01, "batch_size": 512}, 0.71),
            ("lcron", {}, {"lr": 0.001, "batch_size": 2048}, 0.74),
            ("lcron", {}, {"lr": 0.01, "batch_size": 2048}, 0.75),
        ],
    )
    assert [t.train for t in tables] == [{"lr": 0.001}, {}]
    for table in tables:
        assert table.variants == ["bce[batch_size=512]", "lcron[batch_size=2048]"]


def test_evaluation_fields_always_split_the_tables(tmp_path):
    tables = tuned(
        tmp_path,
        [("bce", {}, {"eval_protocol": "release"}, 0.70), ("lcron", {}, {}, 0.75)],
    )
    assert sorted(t.title for t in tables) == [
        "recflow-2stage on synthetic:tiny",
        "recflow-2stage on synthetic:tiny (eval_protocol=release)",
    ]
    assert all(len(t.variants) == 1 for t in tables)


def test_paper_numbers_are_matched_at_each_variants_own_training_fields(tmp_path):
    """bce at the paper's default protocol (Table 2), lcron at lr 0.001 / batch 512 (Table 9)."""
    tables = tuned(
        tmp_path,
        [("bce", {}, {}, 0.70), ("lcron", {}, {"lr": 0.001, "batch_size": 512}, 0.75)],
    )
    (table,) = tables
    numbers = published_numbers(table)
    by_variant = numbers.groupby("variant")["table"].first()
    assert by_variant.to_dict() == {"bce": "2", "lcron[lr=0.001, batch_size=512]": "9"}
