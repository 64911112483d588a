"""The fault and fuzz tier (issue 15): property-based checks that bad input never escapes as a
traceback or a silent wrong result. Whatever Hypothesis generates, the outcome is either a valid
result or a CascbenchError (the CLI prints it as one line, exit 2).

    pytest -m faults      # this tier with the other bad-input tests; also part of the default run
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from grid_tasks import behaving_task, planned
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cascbench.errors import CascbenchError
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.configfile import parse_seeds, validate_experiment
from cascbench.experiment.executors import InProcessExecutor
from cascbench.experiment.grid import run_grid
from cascbench.experiment.plan import plan_experiment
from cascbench.experiment.store import ResultStore

pytestmark = pytest.mark.faults

FUZZ = settings(
    max_examples=int(os.environ.get("CASCBENCH_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
#: Documents built from the experiment file's real keys, with values of any type.
KEYS = ["setting", "dataset", "methods", "train", "model", "seeds", "world_seeds", "grid", "tune"]
SUB_KEYS = {
    "dataset": ["kind", "world", "seed", "world_options", "days", "data_dir"],
    "train": ["lr", "batch_size", "epochs", "split", "eval_protocol", "device"],
    "tune": ["trials", "seeds", "metric", "search_space"],
}
documents = st.fixed_dictionaries(
    {},
    optional={
        key: (
            st.fixed_dictionaries({}, optional=dict.fromkeys(SUB_KEYS[key], values))
            if key in SUB_KEYS
            else values
        )
        for key in KEYS
    },
)


@FUZZ
@given(st.text(max_size=20))
def test_any_seed_text_parses_or_is_a_clear_error(text):
    try:
        seeds = parse_seeds(text)
    except CascbenchError as exc:
        assert "seeds" in str(exc)
    else:
        assert all(isinstance(s, int) and s >= 0 for s in seeds)


@FUZZ
@given(documents)
def test_any_experiment_document_plans_or_is_a_clear_error(document):
    try:
        experiment = validate_experiment(document, "fuzz")
        runs, _ = plan_experiment(experiment, "fuzz")
    except CascbenchError as exc:
        assert str(exc).startswith("fuzz")
    else:
        for run in runs:  # every planned run is a valid, finite configuration
            assert run.config.train.lr > 0 and run.config.seed >= 0


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    configs = [
        RunConfig(
            method=m, dataset=DatasetConfig(world="tiny"), train=TrainConfig(batch_size=64), seed=0
        )
        for m in ("bce", "lcron")
    ]
    summary = run_grid(
        planned(configs), ResultStore(root), executor=InProcessExecutor(behaving_task)
    )
    assert len(summary.done) == 2
    return root


@FUZZ
@given(
    file=st.sampled_from(
        ["config.json", "metrics.json", "per_request.parquet", "DONE", "environment.json"]
    ),
    action=st.sampled_from(["truncate", "flip", "delete", "empty"]),
    where=st.floats(min_value=0.0, max_value=1.0),
)
@example(file="DONE", action="truncate", where=0.9999999999999999)  # only the final newline cut
def test_a_damaged_run_folder_is_never_trusted_and_never_crashes(
    finished_store, tmp_path, file, action, where
):
    root = tmp_path / "store"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(finished_store, root)
    store = ResultStore(root)
    run_id = sorted(p.name for p in (root / "runs").iterdir() if not p.name.startswith("."))[0]
    path = root / "runs" / run_id / file
    data = path.read_bytes()
    cut = int(where * len(data))
    if action == "truncate":
        path.write_bytes(data[:cut])
    elif action == "flip" and data:
        index = min(cut, len(data) - 1)
        path.write_bytes(data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :])
    elif action == "delete":
        path.unlink()
    else:
        path.write_bytes(b"")
    # DONE is read as JSON, so a cut that takes only its final newline leaves the same manifest.
    significant = bytes.rstrip if file == "DONE" else bytes
    changed = not path.exists() or significant(path.read_bytes()) != significant(data)
    state = {e.run_id: e.state for e in store.entries()}[run_id]
    finished = [r.run_id for r in store.finished_runs()]  # never raises
    if state == "done":
        # Only an unchanged folder (or a DONE emptied into the pre-manifest form) still verifies.
        assert not changed or (
            file == "DONE" and action in ("empty", "truncate") and not path.read_bytes().strip()
        )
        assert run_id in finished
    else:
        assert run_id not in finished
    # And `run` takes it up again: the damaged run is set aside and rerun, the other kept.
    configs = json.loads(Path(next((root / "plans").iterdir())).read_text())["runs"]
    runs = [r for r in planned([RunConfig.model_validate(c) for c in configs.values()])]
    summary = run_grid(runs, store, executor=InProcessExecutor(behaving_task))
    assert summary.exit_code == 0 and store.is_done(run_id)


@pytest.fixture(scope="module")
def prepared_cache(tmp_path_factory):
    from recflow_data import export_tiny

    from cascbench.datasets.cache import prepare_recflow

    root = tmp_path_factory.mktemp("cache")
    _, days = export_tiny(root / "src", short=False)
    prepare_recflow(root / "src", "recflow-2stage", days, root / "cache", sequence_length=10)
    return root / "cache", days


@FUZZ
@given(
    array=st.sampled_from(["context", "sequence", "sequence_mask", "candidates", "label", "mask"]),
    action=st.sampled_from(["truncate", "flip", "delete"]),
    where=st.floats(min_value=0.0, max_value=1.0),
)
def test_a_damaged_cache_file_is_a_clear_error_or_still_valid(
    prepared_cache, tmp_path, array, action, where
):
    from cascbench.datasets.cache import open_cache
    from cascbench.settings import get_setting

    source, days = prepared_cache
    cache = tmp_path / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(source, cache)
    path = cache / "days" / days[0] / f"{array}.npy"
    data = path.read_bytes()
    cut = int(where * len(data))
    if action == "truncate":
        path.write_bytes(data[:cut])
    elif action == "flip":
        index = min(cut, len(data) - 1)
        path.write_bytes(data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :])
    else:
        path.unlink()
    try:
        opened = open_cache(cache, get_setting("recflow-2stage"), days).joined()
    except CascbenchError as exc:
        assert days[0] in str(exc) or str(cache) in str(exc)
    else:
        # A flipped byte that leaves a valid array (a label still finite, an id still in range)
        # cannot be told from data; the arrays are then still well formed.
        assert opened.label.isfinite().all() and opened.mask.dtype == torch.bool
