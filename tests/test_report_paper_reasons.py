"""--compare-paper names, for each row without the paper's numbers, the condition that failed;
a table of one method says there is nothing to compare against."""

import itertools
import json

import pytest
from report_runs import two_stage_metrics, write_run
from typer.testing import CliRunner

from cascbench.cli import app
from cascbench.experiment.config import RunConfig
from cascbench.experiment.store import ResultStore
from cascbench.report.build import ReportOptions, build_report
from cascbench.report.compare import CompareOptions
from cascbench.report.paper import matching_numbers, unmatched_reasons, unmatched_rows
from cascbench.report.tables import runs_frame, summarize

runner = CliRunner()
TRAIN = {"lr": 0.01, "batch_size": 1024, "epochs": 1, "split": "last-day"}


def resolved(method, setting="recflow-2stage", **params):
    config = RunConfig(setting=setting, method=method, method_params=params).resolved()
    return json.dumps(config.method_params, sort_keys=True)


def test_each_failed_condition_is_named_and_only_those():
    tau20 = resolved("lcron", tau=20.0)
    assert unmatched_reasons("lcron[tau=20.0]", "recflow-2stage", TRAIN, "lcron", tau20) == []
    three = unmatched_reasons(
        "lcron[tau=20.0]", "recflow-3stage", {**TRAIN, "batch_size": 64}, "lcron",
        resolved("lcron", "recflow-3stage", tau=20.0),
    )  # fmt: skip
    assert three == [
        "lcron[tau=20.0] has no row in the paper's tables on recflow-3stage (its lcron rows: lcron)"
    ]
    (protocol,) = unmatched_reasons(
        "lcron[tau=20.0]", "recflow-2stage", {**TRAIN, "batch_size": 64}, "lcron", tau20
    )
    assert protocol.startswith("lr=0.01, batch_size=64: the paper has lcron[tau=20.0] at ")
    assert "lr=0.01, batch_size=1024" in protocol
    both = unmatched_reasons(
        "bce",
        "recflow-2stage",
        {**TRAIN, "epochs": 2, "split": "streaming"},
        "bce",
        resolved("bce"),
    )
    assert [r.split(":")[0] for r in both] == ["epochs=2", "split=streaming"]
    (setting,) = unmatched_reasons("bce", "synthetic-4stage", TRAIN, "bce", resolved("bce"))
    assert setting.startswith("the paper has no synthetic-4stage")
    (absent,) = unmatched_reasons("dftopk", "recflow-2stage", TRAIN, "dftopk", resolved("dftopk"))
    assert "no dftopk at all" in absent


@pytest.mark.parametrize(
    ("lr", "batch_size", "epochs", "split"),
    itertools.product((0.01, 0.02), (512, 1024), (1, 2), ("last-day", "streaming")),
)
def test_the_reasons_agree_with_the_matching(lr, batch_size, epochs, split):
    train = {"lr": lr, "batch_size": batch_size, "epochs": epochs, "split": split}
    for method, params in (("bce", {}), ("lcron", {"tau": 20.0}), ("lcron", {"tau": 7.0})):
        json_params = resolved(method, **params)
        matched = not matching_numbers("recflow-2stage", train, {"x": (method, json_params)}).empty
        reasons = unmatched_reasons("x", "recflow-2stage", train, method, json_params)
        assert matched == (not reasons), (method, params, reasons)


def test_the_report_names_the_row_that_has_no_paper_numbers(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, "bce", seed, two_stage_metrics(0.85), train={"batch_size": 64})
        write_run(
            tmp_path, "lcron", seed, two_stage_metrics(0.86), params={"tau": 7},
            train={"batch_size": 64},
        )  # fmt: skip
    table = summarize(runs_frame(ResultStore(tmp_path).finished_runs()))[0]
    assert list(unmatched_rows(table)) == ["bce", "lcron[tau=7.0]"]
    result = runner.invoke(
        app, ["report", "--results-dir", str(tmp_path), "--compare-paper", "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert (
        "no published numbers for lcron[tau=7.0]: lcron[tau=7.0] has no row in the paper's "
        "tables on recflow-2stage (its lcron rows: lcron, lcron:fixed_weight=0.01," in text
    )
    assert "no published numbers for bce: lr=0.01, batch_size=64: the paper has bce at" in text


def test_a_table_of_one_method_says_there_is_nothing_to_compare_against(tmp_path):
    for seed in (0, 1, 2):
        write_run(tmp_path, "lcron", seed, two_stage_metrics(0.86 + 0.001 * seed))
    frame = runs_frame(ResultStore(tmp_path).finished_runs())
    report = build_report(frame, ReportOptions(compare=CompareOptions(resamples=0)))
    footnotes = " ".join(report.tables[0].footnotes)
    assert "nothing to compare" in footnotes
    assert "needs at least 2" not in footnotes
