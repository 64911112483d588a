"""The benchmark suite's code path on a tiny world (its numbers are measured on demand only)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from cascbench.datasets import load_dataset
from cascbench.errors import CascbenchError
from cascbench.experiment.config import DatasetConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_operators
import suite
import suite_case


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    data = load_dataset(DatasetConfig(world="tiny"), "recflow-2stage")
    folder = tmp_path_factory.mktemp("world")
    suite_case.save_data(data, folder)
    return data, folder


def test_saved_data_opens_memory_mapped_and_equal(saved):
    data, folder = saved
    opened = suite_case.open_data(folder)
    assert opened.schema == data.schema
    for name in suite_case.ARRAYS:
        assert torch.equal(getattr(opened, name), getattr(data, name)), name


def test_one_case_measures_every_quantity(saved):
    _, folder = saved
    spec = {
        "setting": "recflow-2stage",
        "method": "bce",
        "data": {"kind": "npy", "path": str(folder)},
        "repeats": 1,
        "split_steps": 1,
        "train": {"device": "cpu", "batch_size": 64},
    }
    result = suite_case.run_case(spec)
    # 2 training days of 200, each day's last partial batch of 64 dropped: 2 × 192
    assert result["train_requests"] == 384 and result["test_requests"] == 200
    for key in ("train_rps", "predict_eval_rps", "evaluator_rps", "peak_rss_mb", "model_ms"):
        assert result[key] > 0, key
    assert 0.0 <= result["joint_recall"] <= 1.0
    table = suite.format_table([{"setting": "recflow-2stage", "method": "bce", **result}], False)
    assert table.count("\n") == 2 and "| recflow-2stage | bce |" in table


def test_recflow_vocabulary_widens_only_the_named_fields(saved):
    data, _ = saved
    widened = dict(suite.widened_schema(data.schema).item_fields)
    assert widened["video_id"] == suite.RECFLOW_VOCABULARY["video_id"]
    assert widened["upload_type"] == dict(data.schema.item_fields)["upload_type"]


def test_a_device_section_is_replaced_and_the_rest_kept(tmp_path):
    results = tmp_path / "RESULTS.md"
    suite.write_section(results, "cpu", "## CPU\nold numbers")
    suite.write_section(results, "gpu", "## GPU\ngpu numbers")
    results.write_text(results.read_text() + "\nA note written by hand.\n")
    suite.write_section(results, "cpu", "## CPU\nnew numbers")
    text = results.read_text()
    assert "new numbers" in text and "old numbers" not in text
    assert "gpu numbers" in text and "A note written by hand." in text
    assert text.index("## CPU") < text.index("## GPU")  # replaced in place


def test_cuda_without_a_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(CascbenchError, match="CUDA is not available"):
        suite.main(["--device", "cuda", "--no-write"])


@pytest.mark.parametrize("relaxation", bench_operators.RELAXATIONS)
def test_the_operator_benchmark_measures_every_relaxation(relaxation):
    result = bench_operators.measure(relaxation, 12, "cpu", batch=4, repeats=1)
    assert result["ms"] > 0 and result["peak_mb"] >= 0
