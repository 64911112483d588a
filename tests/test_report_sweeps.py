"""Sweep detection and sweep tables, and tables split by training configuration (Tables 9–12)."""

import pytest
from report_runs import two_stage_metrics, write_run

from cascbench.experiment.store import ResultStore
from cascbench.report.build import ReportOptions, build_report
from cascbench.report.compare import CompareOptions
from cascbench.report.sweeps import find_sweeps
from cascbench.report.tables import runs_frame, summarize

TAU_JOINT = {1: 0.70, 20: 0.74, 50: 0.75, 1000: 0.72}
WEIGHT_JOINT = {None: 0.75, 0.5: 0.73, 2: 0.76}


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    for seed in (0, 1):
        for tau, joint in TAU_JOINT.items():
            params = {} if tau == 50 else {"tau": tau}
            write_run(root, "lcron", seed, two_stage_metrics(joint + 0.001 * seed), params=params)
        for weight, joint in WEIGHT_JOINT.items():
            if weight is not None:
                params = {"fixed_weight": weight}
                write_run(
                    root, "lcron", seed, two_stage_metrics(joint + 0.001 * seed), params=params
                )
        # An ablation (a boolean) and an option (a string): variants, not sweeps.
        write_run(root, "lcron", seed, two_stage_metrics(0.74), params={"no_e2e": True})
        write_run(root, "lcron", seed, two_stage_metrics(0.74), params={"sort": "softsort"})
        # A learning-rate × batch-size grid of two methods.
        for lr in (0.001, 0.01):
            for batch_size in (512, 1024):
                for method, joint in (("bce", 0.6), ("rankflow", 0.65)):
                    write_run(
                        root,
                        method,
                        seed,
                        two_stage_metrics(joint + lr + batch_size / 1e5),
                        train={"lr": lr, "batch_size": batch_size},
                    )
    return runs_frame(ResultStore(root).finished_runs())


def by_name(sweeps):
    return {(s.method, s.parameter, tuple(s.context.items())): s for s in sweeps}


def test_numeric_parameters_are_sweeps_with_sorted_rows(frame):
    sweeps = by_name(find_sweeps(frame))
    tau = sweeps[("lcron", "tau", ())]
    assert list(tau.mean.index) == [1.0, 20.0, 50.0, 1000.0]
    assert list(tau.mean["joint_recall"]) == pytest.approx([v + 0.0005 for v in TAU_JOINT.values()])
    assert tau.n["joint_recall"].tolist() == [2, 2, 2, 2]
    assert tau.numeric
    weight = sweeps[("lcron", "fixed_weight", ())]
    assert list(weight.mean.index) == [None, 0.5, 2.0]  # None (learned weights) first
    assert not weight.numeric
    assert not any(p in ("no_e2e", "sort") for _, p, _ in sweeps)


def test_training_fields_sweep_per_method_within_each_context(frame):
    sweeps = by_name(find_sweeps(frame))
    for method in ("bce", "rankflow"):
        # lr varies at each batch size; the default batch size is no context worth naming.
        assert list(sweeps[(method, "lr", (("batch_size", 512),))].mean.index) == [0.001, 0.01]
        assert list(sweeps[(method, "lr", ())].mean.index) == [0.001, 0.01]
        assert list(sweeps[(method, "batch_size", (("lr", 0.001),))].mean.index) == [512, 1024]
        assert list(sweeps[(method, "batch_size", ())].mean.index) == [512, 1024]
    assert sum(s.method == "lcron" for s in sweeps.values()) == 2


def test_tables_split_by_training_configuration(frame):
    tables = summarize(frame)
    titles = [t.title for t in tables]
    assert len(tables) == 4
    assert "recflow-2stage on synthetic:tiny (lr=0.001, batch_size=512)" in titles
    default = next(t for t in tables if not t.train)
    # The default configuration holds both methods and every lcron variant.
    assert {"bce", "rankflow", "lcron", "lcron[tau=1.0]", "lcron[no_e2e=True]"} <= set(
        default.variants
    )
    small = next(t for t in tables if t.train == {"lr": 0.001, "batch_size": 512})
    assert small.variants == ["bce", "rankflow"]
    assert small.mean.at["bce", "joint_recall"] == pytest.approx(0.6 + 0.001 + 0.00512)


def test_report_renders_one_table_per_sweep(frame):
    report = build_report(frame, ReportOptions(compare=CompareOptions(resamples=0)))
    sweep_tables = [t for t in report.tables if "sweep" in t.title]
    # tau and fixed_weight; per baseline: lr at two batch sizes, batch size at two lrs.
    assert len(sweep_tables) == 10
    tau = next(t for t in sweep_tables if t.title.startswith("lcron: tau sweep"))
    assert tau.header[:3] == ["tau", "n", "joint_recall"]
    assert [row[0].text for row in tau.rows] == ["1.0", "20.0", "50.0", "1000.0"]
    joint = [row[2] for row in tau.rows]
    assert [c.bold for c in joint] == [False, False, True, False]
    assert [c.underline for c in joint] == [False, True, False, False]
    assert {"", "lr=0.001, batch_size=512"} <= set(report.cells["train"].fillna(""))
