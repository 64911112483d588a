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


def env(cpu: str, device: str = "cpu", gpus: tuple[str, ...] = (), threads: int = 0) -> dict:
    recorded = {
        "cpu_model": cpu,
        "device": device,
        "gpus": list(gpus),
        "versions": {"torch": "2.13"},
    }
    if threads:
        recorded["determinism"] = {"torch_threads": threads}
    return recorded


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
    assert machine_kind(env("Xeon", threads=2)) == "Xeon, 2 threads, torch 2.13"
    assert machine_kind(env("Xeon", threads=1)) == "Xeon, 1 thread, torch 2.13"
    # A GPU run's numbers are the GPU's: its host threads are not part of its kind.
    assert machine_kind(env("Xeon", "cuda:0", ("NVIDIA H100",), threads=16)) == (
        "NVIDIA H100, torch 2.13"
    )


def test_runs_with_other_thread_counts_carry_a_warning(tmp_path):
    # One thread per worker under `--jobs 2` on 2 cores, two threads in process: other rounding.
    notes = notes_of(tmp_path, [env("AMD EPYC", threads=1), env("AMD EPYC", threads=2)])
    assert any(
        "2 kinds of machine (AMD EPYC, 1 thread, torch 2.13; AMD EPYC, 2" in n for n in notes
    )
    assert environment()["cpu_model"] == cpu_model() != ""
