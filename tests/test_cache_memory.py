"""A prepared cache opens as a DayStack of memory maps (issue 16): opening it keeps its pages out of
the process's resident memory, and training on it gives exactly what training on the same days
concatenated gives."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch
from recflow_data import export_tiny

from cascbench.datasets.cache import _write_day, open_cache, prepare_recflow
from cascbench.datasets.recflow_reader import DayArrays
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.runner import train_run
from cascbench.settings import get_setting

ARRAYS = ("context", "sequence", "sequence_mask", "candidates", "label", "mask", "request_id")


def prepared_cache(tmp_path, sequence_length: int = 10):
    _, days = export_tiny(tmp_path / "src")
    prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache",
                    sequence_length=sequence_length)  # fmt: skip
    return tmp_path / "cache", days


def test_training_on_the_stacked_days_equals_training_on_them_joined(tmp_path):
    cache, days = prepared_cache(tmp_path)
    stacked = open_cache(cache, get_setting("recflow-2stage"), days)
    assert stacked.days() == [0, 1, 2] and [stacked.day_size(d) for d in range(3)] == [200] * 3
    dataset = DatasetConfig(kind="recflow", data_dir=str(cache), days=days)
    config = RunConfig(
        setting="recflow-2stage",
        dataset=dataset,
        method="lcron",
        train=TrainConfig(batch_size=64, device="cpu"),
    )
    by_day, joined = train_run(config, stacked), train_run(config, stacked.joined())
    assert by_day.metrics == joined.metrics and by_day.curve == joined.curve
    assert np.array_equal(by_day.request_id, joined.request_id)


def test_each_day_is_a_memory_map_of_its_files(tmp_path):
    cache, days = prepared_cache(tmp_path)
    stacked = open_cache(cache, get_setting("recflow-2stage"), days)
    day = stacked.day_data(1)
    on_disk = np.load(cache / "days" / days[1] / "candidates.npy", mmap_mode="r")
    assert torch.equal(day.candidates, torch.from_numpy(np.array(on_disk)))
    assert (day.day == 1).all() and day.group.stride(0) == 0  # one shared row, no [R, N] copy
    day.candidates[0, 0, 0] = -5  # copy-on-write: the file never changes
    assert np.load(cache / "days" / days[1] / "candidates.npy")[0, 0, 0] != -5


RSS_SCRIPT = """
import json, sys
import numpy as np
import torch
from cascbench.datasets.cache import open_cache
from cascbench.settings import get_setting

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

cache, days = sys.argv[1], json.loads(sys.argv[2])
before = rss()
data = open_cache(cache, get_setting("recflow-2stage"), days)
opened = rss()
batch = data.day_data(0).batch(torch.arange(64))  # reads a few pages of one day
read = rss()
print(json.dumps({"open": opened - before, "batch": read - before, "bytes": data.nbytes}))
"""


def test_opening_a_cache_grows_resident_memory_by_a_small_fraction_of_it(tmp_path):
    cache, days = prepared_cache(tmp_path, sequence_length=50)
    manifest = json.loads((cache / "manifest.json").read_text())
    for day in days:  # each day 250 times over: about 100 MB a day
        folder = cache / "days" / day
        arrays = {name: np.load(folder / f"{name}.npy") for name in ARRAYS}
        tiled = {name: np.concatenate([a] * 250) for name, a in arrays.items()}
        tiled["request_id"] = np.arange(len(tiled["request_id"]), dtype=np.int64)
        recorded = _write_day(cache, day, DayArrays(**tiled, stats={}))
        manifest["days"][day]["arrays"] = recorded
    (cache / "manifest.json").write_text(json.dumps(manifest))
    done = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(cache), json.dumps(list(days))],
        capture_output=True,
        text=True,
        check=True,
    )
    grown = json.loads(done.stdout)
    print(grown)  # shown with -s: the numbers quoted in issue 16
    assert grown["bytes"] > 250 * 2**20
    assert grown["open"] < 0.05 * grown["bytes"], grown
    assert grown["batch"] < 0.05 * grown["bytes"], grown
