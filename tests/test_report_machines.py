"""Reports say when a table's runs come from different kinds of machine (issue 15, defect 7)."""

from __future__ import annotations

import pytest
from report_runs import write_run

from cascbench.experiment.environment import cpu_model, environment, machine_kind
from cascbench.experiment.store import ResultStore
from cascbench.report.build import ReportOptions, build_report
from cascbench.report.compare import CompareOptions
from cascbench.report.tables import runs_frame

pytestmark = pytest.mark.faults

METRICS = {"joint_recall": 0.8, "recall/ranking": 0.8, "recall/retrieval": 0.9}


def env(cpu: str, device: str = "cpu", gpus: tuple[str, ...] = ()) -> dict:
    return {"cpu_model": cpu, "device": device, "gpus": list(gpus), "versions": {"torch": "2.13"}}


def notes_of(tmp_path, environments):
    for seed, recorded in enumerate(environments):
        for method in ("bce", "lcron"):
            write_run(tmp_path, method, seed, METRICS, environment=recorded)
    frame = runs_frame(ResultStore(tmp_path).finished_runs())
    return build_report(frame, ReportOptions(compare=CompareOptions(resamples=0))).notes


def test_a_table_from_two_cpus_carries_a_warning(tmp_path):
    notes = notes_of(tmp_path, [env("Intel Xeon"), env("AMD EPYC")])
    assert any("2 kinds of machine (AMD EPYC, torch 2.13; Intel Xeon" in n for n in notes), notes


def test_runs_of_one_machine_or_without_environment_carry_none(tmp_path):
    assert not any("kinds of machine" in n for n in notes_of(tmp_path, [env("Intel Xeon")] * 2))
    assert not any("kinds of machine" in n for n in notes_of(tmp_path / "old", [None, None]))


def test_the_machine_is_the_gpu_for_a_gpu_run_and_the_cpu_otherwise():
    assert machine_kind(env("Xeon", "cuda:0", ("NVIDIA H100",))) == "NVIDIA H100, torch 2.13"
    assert machine_kind(env("Xeon")) == "Xeon, torch 2.13"
    assert machine_kind({}) == ""
    assert environment()["cpu_model"] == cpu_model() != ""
