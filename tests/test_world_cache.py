"""A synthetic world drawn day by day and written as a cache (issue 16): days independent of each
other, the cache opens and trains like a RecFlow cache, and an interrupted write resumes to the
same bytes."""

from __future__ import annotations

import pytest
import torch

from cascbench.datasets.cache import open_cache, read_manifest
from cascbench.datasets.synthetic import generate_days, get_world_config
from cascbench.datasets.synthetic import world as world_module
from cascbench.datasets.world_cache import world_day_names, write_world_cache
from cascbench.errors import CascbenchError
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.runner import train_run
from cascbench.settings import get_setting

SETTING = get_setting("recflow-2stage")
TINY = get_world_config("tiny")
ARRAYS = ("context", "sequence", "sequence_mask", "candidates", "label", "mask", "request_id")


def test_each_day_is_the_same_drawn_alone_or_after_the_others():
    every = list(generate_days(SETTING, TINY, seed=4))
    assert [int(d.day[0]) for d in every] == list(range(TINY.days))
    assert torch.equal(
        torch.cat([d.request_id for d in every]), torch.arange(TINY.days * TINY.requests_per_day)
    )
    (alone,) = generate_days(SETTING, TINY, seed=4, days=range(2, 3))
    for name in (*ARRAYS, "utility", "day"):
        assert torch.equal(getattr(alone, name), getattr(every[2], name)), name
    (other,) = generate_days(SETTING, TINY, seed=5, days=range(2, 3))
    assert not torch.equal(other.candidates, alone.candidates)


def test_a_day_drawn_in_chunks_keeps_its_time_order_and_ids(monkeypatch):
    # 200 requests a day in chunks of 64: four chunks, the last one short.
    monkeypatch.setattr(world_module, "DAY_CHUNK_REQUESTS", 64)
    (day,) = generate_days(SETTING, TINY, seed=4, days=range(1, 2))
    (again,) = generate_days(SETTING, TINY, seed=4, days=range(1, 2))
    for name in (*ARRAYS, "utility", "day"):
        assert torch.equal(getattr(day, name), getattr(again, name)), name
    r = TINY.requests_per_day
    assert torch.equal(day.request_id, torch.arange(r, 2 * r))
    assert bool((day.day == 1).all())
    # Ordered by time of day across the chunk boundaries (context: weekday, hour, minute, ...).
    time_of_day = day.context[:, 1].long() * 60 + day.context[:, 2].long()
    assert bool((time_of_day[1:] >= time_of_day[:-1]).all())
    # Each chunk draws its own pools and noise: no chunk repeats the first one's candidates.
    first = day.candidates[:64]
    assert not any(torch.equal(first[:8], day.candidates[s : s + 8]) for s in (64, 128))
    # The same requests (who, when) as the day drawn in one piece: only their items differ.
    monkeypatch.setattr(world_module, "DAY_CHUNK_REQUESTS", 1 << 20)
    (whole,) = generate_days(SETTING, TINY, seed=4, days=range(1, 2))
    assert torch.equal(day.context, whole.context)
    assert not torch.equal(day.candidates, whole.candidates)


def test_the_written_cache_holds_the_days_and_trains(tmp_path):
    summary = write_world_cache(SETTING, TINY, tmp_path / "cache", seed=4, world_name="tiny")
    days = world_day_names(TINY)
    assert days[0] == "2024-01-13" and summary.written == list(days)
    assert summary.requests == TINY.days * TINY.requests_per_day
    stacked = open_cache(tmp_path / "cache", SETTING, days)
    for index, drawn in enumerate(generate_days(SETTING, TINY, seed=4)):
        for name in ARRAYS:
            assert torch.equal(getattr(stacked.day_data(index), name), getattr(drawn, name)), name
    dataset = DatasetConfig(kind="recflow", data_dir=str(tmp_path / "cache"), days=days)
    config = RunConfig(
        setting=SETTING.name,
        dataset=dataset,
        method="bce",
        train=TrainConfig(batch_size=64, device="cpu"),
    )
    record = train_run(config, stacked)
    assert record.stats["test_requests"] == TINY.requests_per_day
    assert read_manifest(tmp_path / "cache")["world"]["name"] == "tiny"


def test_an_interrupted_write_resumes_to_the_same_bytes(tmp_path):
    write_world_cache(SETTING, TINY, tmp_path / "straight", seed=4)

    def stop_at_day_two(day: str, status: str) -> None:
        if status == "writing" and day == world_day_names(TINY)[1]:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_world_cache(SETTING, TINY, tmp_path / "resumed", seed=4, on_day=stop_at_day_two)
    resumed = write_world_cache(SETTING, TINY, tmp_path / "resumed", seed=4)
    assert resumed.kept == [world_day_names(TINY)[0]] and len(resumed.written) == TINY.days - 1
    for day in world_day_names(TINY):
        for name in ARRAYS:
            file = f"days/{day}/{name}.npy"
            assert (tmp_path / "resumed" / file).read_bytes() == (
                tmp_path / "straight" / file
            ).read_bytes(), file


def test_another_world_in_the_same_folder_needs_force(tmp_path):
    write_world_cache(SETTING, TINY, tmp_path / "cache", seed=4)
    with pytest.raises(CascbenchError, match=r"prepared differently.*world.*--force"):
        write_world_cache(SETTING, TINY, tmp_path / "cache", seed=5)
    again = write_world_cache(SETTING, TINY, tmp_path / "cache", seed=5, force=True)
    assert len(again.written) == TINY.days


def test_the_cache_identity_follows_the_world(tmp_path):
    from cascbench.datasets.cache import cache_identity

    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        write_world_cache(SETTING, TINY, tmp_path / name, seed=seed)
    days = world_day_names(TINY)
    same = cache_identity(tmp_path / "a", days) == cache_identity(tmp_path / "b", days)
    assert same and cache_identity(tmp_path / "a", days) != cache_identity(tmp_path / "c", days)


def test_the_command_writes_a_cache_that_a_run_reads(tmp_path):
    from typer.testing import CliRunner

    from cascbench.cli import app

    runner = CliRunner()
    out = tmp_path / "cache"
    written = runner.invoke(app, ["data", "prepare", "world", "--world", "tiny", "--out", str(out)])
    assert written.exit_code == 0, written.output
    assert "3 day(s) written" in written.output and "2024-01-13..2024-01-15" in written.output
    args = ["run", "--dataset", "recflow", "--data-dir", str(out), "--days",
            "2024-01-13..2024-01-15", "--methods", "bce", "--seeds", "0", "--batch-size", "64",
            "--results-dir", str(tmp_path / "results"), "--quiet"]  # fmt: skip
    ran = runner.invoke(app, args)
    assert ran.exit_code == 0, ran.output
    bad = runner.invoke(app, ["data", "prepare", "world", "--world", "huge", "--out", str(out)])
    assert bad.exit_code != 0 and "Unknown world preset 'huge'" in bad.output
