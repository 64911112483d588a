"""The paper's published numbers: names mapped to ours, rows matched, shown beside ours."""

import json

import pytest
from report_runs import two_stage_metrics, write_run
from typer.testing import CliRunner

from cascbench.cli import app
from cascbench.experiment.config import RunConfig
from cascbench.experiment.store import ResultStore
from cascbench.report.build import ReportOptions, build_report
from cascbench.report.compare import CompareOptions
from cascbench.report.paper import matching_numbers, metric_name, paper_numbers, variant_params
from cascbench.report.tables import runs_frame

runner = CliRunner()


def test_metric_and_variant_names_map_to_ours():
    assert metric_name("joint_recall") == "joint_recall"
    assert metric_name("rank_recall") == "recall/ranking"
    assert metric_name("retr_ndcg") == "ndcg/retrieval"
    assert metric_name("prerank_recall") == "recall/prerank"
    assert metric_name("epoch_seconds") is None
    assert variant_params("bce") == ("bce", {})
    assert variant_params("lcron:tau=20") == ("lcron", {"tau": 20})
    assert variant_params("lcron:no_e2e") == ("lcron", {"no_e2e": True})
    assert variant_params("lcron:softsort") == ("lcron", {"sort": "softsort"})
    assert variant_params("lcron:q_in_e2e=quotas") == ("lcron", {"k_e2e": "quotas"})


def test_the_shipped_numbers_are_complete_and_resolve():
    numbers = paper_numbers()
    tables = set(numbers["table"])
    assert {"2", "3", "4", "6", "7", "8", "9", "10", "11", "12", "E.1"} <= tables
    assert "D" not in tables  # the cost table has no metric of ours
    headline = numbers[(numbers["table"] == "2") & (numbers["method"] == "lcron")]
    assert headline.set_index("metric").at["joint_recall", "mean"] == 0.8732
    three = numbers[numbers["table"] == "6"]
    assert set(three["metric"]) == {
        "joint_recall", "recall/ranking", "ndcg/ranking", "recall/prerank", "ndcg/prerank",
        "recall/retrieval", "ndcg/retrieval",
    }  # fmt: skip
    assert set(
        numbers.loc[numbers["table"] == "9", ["lr", "batch_size"]].itertuples(index=False)
    ) == {(0.001, 512)}


def resolved(method, params=None):
    config = RunConfig(setting="recflow-2stage", method=method, method_params=params or {})
    return method, json.dumps(config.resolved().method_params, sort_keys=True)


def test_rows_match_by_protocol_and_resolved_parameters():
    variants = {
        "bce": resolved("bce"),
        "lcron[no_e2e=True]": resolved("lcron", {"no_e2e": True}),
        "lcron[tau=20.0]": resolved("lcron", {"tau": 20.0}),
        "lcron[tau=7.0]": resolved("lcron", {"tau": 7.0}),
    }
    train = {"lr": 0.01, "batch_size": 1024, "epochs": 1, "split": "last-day"}
    numbers = matching_numbers("recflow-2stage", train, variants).set_index(["variant", "metric"])
    assert numbers.loc[("bce", "joint_recall"), "table"] == "2"
    assert numbers.loc[("bce", "joint_recall"), "mean"] == 0.8539
    assert numbers.loc[("lcron[no_e2e=True]", "joint_recall"), "table"] == "3"
    assert numbers.loc[("lcron[no_e2e=True]", "joint_recall"), "mean"] == 0.8710
    assert numbers.loc[("lcron[tau=20.0]", "recall/retrieval"), "mean"] == 0.9696
    assert "lcron[tau=7.0]" not in numbers.index.get_level_values(0)
    small = matching_numbers("recflow-2stage", {**train, "lr": 0.001, "batch_size": 512}, variants)
    assert (
        set(small["table"]) == {"9"}
        and small.set_index("metric").at["joint_recall", "mean"] == 0.8181
    )
    assert matching_numbers("recflow-2stage", {**train, "lr": 0.005}, variants).empty
    assert matching_numbers("recflow-2stage", {**train, "split": "streaming"}, variants).empty


@pytest.fixture
def paper_store(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, "bce", seed, two_stage_metrics(0.85 + 0.001 * seed))
        write_run(tmp_path, "lcron", seed, two_stage_metrics(0.87 + 0.001 * seed))
        write_run(tmp_path, "lcron", seed, two_stage_metrics(0.86), params={"tau": 20})
    return tmp_path


def test_compare_paper_shows_published_numbers_and_differences(paper_store):
    frame = runs_frame(ResultStore(paper_store).finished_runs())
    options = ReportOptions(compare_paper=True, compare=CompareOptions(resamples=0))
    report = build_report(frame, options)
    table = next(t for t in report.tables if "published" in t.title)
    rows = [[c.text for c in row] for row in table.rows]
    assert rows[0][:3] == ["bce", "ours", "0.8505 ± 0.0007"]
    assert rows[1][:3] == ["", "paper, Table 2", "0.8539 ± 0.0006"]
    assert rows[2][:3] == ["", "Δ", "-0.0034"]
    tau = rows[rows.index(next(r for r in rows if r[0] == "lcron[tau=20.0]")) + 1]
    assert tau[:3] == ["", "paper, Table 8", "0.8709"]  # one run: no std
    notes = " ".join(table.footnotes)
    assert "not RecFlow" in notes and "--eval-protocol release" in notes
    cells = report.cells.set_index(["method", "metric"])
    assert cells.loc[("bce", "joint_recall"), "paper_mean"] == 0.8539
    assert cells.loc[("bce", "joint_recall"), "paper_diff"] == pytest.approx(0.8505 - 0.8539)


def test_compare_paper_without_a_matching_table_says_why(paper_store, tmp_path):
    write_run(paper_store, "bce", 0, two_stage_metrics(0.85), train={"lr": 0.005})
    result = runner.invoke(
        app,
        ["report", "--results-dir", str(paper_store), "--compare-paper", "--format", "markdown"],
    )
    assert result.exit_code == 0, result.output
    assert "reproduced vs published" in result.output
    assert "no table of the paper matches" in result.output and "lr=0.005" in result.output


def test_compare_paper_on_streaming_runs_only_says_why_and_still_reports(tmp_path):
    # Regression: when no table of the results matched the paper, the per-cell export indexed the
    # empty comparison by a column it lacked, and the report crashed with a KeyError.
    for seed in (0, 1):
        for method, joint in (("bce", 0.85), ("lcron", 0.87)):
            write_run(
                tmp_path, method, seed, two_stage_metrics(joint), train={"split": "streaming"}
            )
    result = runner.invoke(
        app, ["report", "--results-dir", str(tmp_path), "--compare-paper", "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    assert "no table of the paper matches" in result.output
    assert "lcron" in result.output and "paper_mean" not in result.output
