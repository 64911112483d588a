"""The benchmark suite's code path on a tiny world (its numbers are measured on demand only)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from cascbench.datasets.cache import read_manifest
from cascbench.datasets.synthetic import get_world_config
from cascbench.datasets.world_cache import world_day_names
from cascbench.errors import CascbenchError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_operators
import suite
import suite_case
import vs_release


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The tiny world written as a cache, as the suite writes its worlds."""
    spec = {"setting": "recflow-2stage", "world": "tiny", "options": {},
            "recflow_vocabulary": True, "folder": str(tmp_path_factory.mktemp("world"))}  # fmt: skip
    suite.prepare_world(spec)
    return spec


def test_the_suite_writes_its_world_as_a_cache_with_recflows_id_tables(saved):
    manifest = read_manifest(saved["folder"])
    schema = {f: n for section in manifest["schema"].values() for f, n in section}
    assert schema["video_id"] == suite.RECFLOW_VOCABULARY["video_id"]
    assert schema["upload_type"] == get_world_config("tiny").n_upload_types + 1  # not widened


def test_one_case_measures_every_quantity(saved):
    days = list(world_day_names(suite.world_config(saved)))
    spec = {
        "setting": "recflow-2stage",
        "method": "bce",
        "data": {"kind": "recflow", "path": saved["folder"], "days": days},
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


def test_the_release_comparison_is_skipped_without_the_release(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["vs_release.py"])
    vs_release.main()
    assert capsys.readouterr().out.startswith("skipped: give the release's folder")


def test_the_release_comparison_alternates_and_takes_the_median_ratio(tmp_path, capsys):
    log = tmp_path / "order"

    def fake(name: str, seconds: float) -> list[str]:
        code = f"import time; open({str(log)!r}, 'a').write({name!r}); time.sleep({seconds})"
        return [sys.executable, "-c", code]

    ratios = vs_release.compare(["lcron"], 3, {"lcron": fake("c", 0.05)}, {"lcron": fake("r", 0.6)})
    assert log.read_text() == "crcrcr"
    # Both sides pay the interpreter's start-up; the release's sleeps are 0.55 s longer.
    assert ratios["lcron"] > 1.5
    assert "| lcron |" in capsys.readouterr().out
    # The release's command is its template with the placeholders filled in.
    assert vs_release.release_command("python {release}/x.py --m {method}", "/r", "bce", "") == [
        "python", "/r/x.py", "--m", "bce"]  # fmt: skip
