"""Export a world to RecFlow format, prepare it, and get the world's canonical arrays back."""

import math
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pytest
import torch
from recflow_data import export_tiny, tiny_world

from cascbench.datasets import load_dataset
from cascbench.datasets.cache import cache_identity, open_cache, prepare_recflow, read_manifest
from cascbench.datasets.recflow_schema import local_time_ids
from cascbench.errors import CascbenchError
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.runner import train_run
from cascbench.settings import get_setting

CANONICAL = ("context", "sequence", "sequence_mask", "candidates", "label", "group", "mask",
             "day", "request_id")  # fmt: skip
WRITER_OPTIONS = {
    "plain": {},
    "legacy": {"legacy_pickles": True, "float_positions": True, "legacy_id_cnt_keys": True},
}


def assert_same_arrays(data, world):
    assert data.schema == world.schema
    for name in CANONICAL:
        got, expected = getattr(data, name), getattr(world, name)
        assert got.dtype == expected.dtype, name
        assert torch.equal(got, expected), name


@pytest.mark.parametrize("options", WRITER_OPTIONS, ids=list(WRITER_OPTIONS))
@pytest.mark.parametrize("setting_name", ["recflow-2stage", "recflow-3stage"])
def test_round_trip_gives_back_the_world(tmp_path, setting_name, options):
    world, days = export_tiny(tmp_path / "src", setting_name, **WRITER_OPTIONS[options])
    length = world.sequence.shape[1]
    prepare_recflow(tmp_path / "src", setting_name, days, tmp_path / "cache",
                    sequence_length=length)  # fmt: skip
    data = open_cache(tmp_path / "cache", get_setting(setting_name), days).joined()
    assert_same_arrays(data, world)
    assert data.utility is None  # RecFlow has no true utility

    # The world really had what the round trip must survive.
    stats = [read_manifest(tmp_path / "cache")["days"][d]["stats"] for d in days]
    groups = {g: sum(s["groups"][g]["short"] for s in stats) for g in stats[0]["groups"]}
    absent = {g: sum(s["groups"][g]["absent"] for s in stats) for g in stats[0]["groups"]}
    gt = setting_name.replace("recflow-2stage", "rank_pos").replace("recflow-3stage", "rerank_pos")
    assert groups[gt] == world.n_requests // 5
    assert groups["rank_neg"] > 0 and absent["coarse_neg"] > 0 and absent["prerank_neg"] > 0
    assert not (world.sequence_mask.all(1)).all()  # sequences with padding rows


def test_graded_labels_are_the_positions_found_in_all_stage(tmp_path):
    _, days = export_tiny(tmp_path / "src", "recflow-2stage", short=False)
    prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache",
                    sequence_length=10)  # fmt: skip
    data = open_cache(tmp_path / "cache", get_setting("recflow-2stage"), days).joined()
    # Hand check: the ground truth of every request is its rank order 1..10: labels 29 .. 20.
    assert torch.equal(data.label[:, :10], torch.arange(29.0, 19.0, -1).expand(len(data.label), 10))
    assert torch.equal(data.label[:, 10:20], torch.full((len(data.label), 10), 7.0))


def test_longer_cached_sequences_pad_on_top(tmp_path):
    world, days = export_tiny(tmp_path / "src", "recflow-2stage", short=False)
    prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache")  # default 50
    data = open_cache(tmp_path / "cache", get_setting("recflow-2stage"), days).joined()
    length = world.sequence.shape[1]
    assert data.sequence.shape[1] == 50
    assert not data.sequence_mask[:, : 50 - length].any()
    assert torch.equal(data.sequence[:, 50 - length :], world.sequence)


def test_local_time_is_utc_plus_8_with_monday_1():
    # 2024-01-13 00:00 in Beijing = 2024-01-12 16:00 UTC = 1705075200: a Saturday (weekday 6).
    midnight = 1705075200
    seconds = np.array([midnight + 30 * 60, midnight + 23 * 3600 + 59 * 60, midnight + 86400])
    assert local_time_ids(seconds).tolist() == [[6, 1, 31], [6, 24, 60], [7, 1, 1]]


def test_a_video_listed_twice_in_the_ground_truth_gets_both_positions(tmp_path):
    world = tiny_world("recflow-2stage", short=False)
    # The tiny world's pools occasionally repeat an item; make sure one request does.
    world.candidates[0, 5] = world.candidates[0, 2]
    from cascbench.datasets.recflow_writer import export_recflow

    setting = get_setting("recflow-2stage")
    days = export_recflow(world, setting, tmp_path / "src")
    prepare_recflow(tmp_path / "src", setting.name, days, tmp_path / "cache", sequence_length=10)
    data = open_cache(tmp_path / "cache", setting, days).joined()
    assert data.label[0, 2] == 27.0 and data.label[0, 5] == 24.0
    assert torch.equal(data.label, world.label)


def test_prepare_skips_cached_days_and_force_prepares_them_again(tmp_path):
    _, days = export_tiny(tmp_path / "src")
    first = prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache")
    assert first.prepared == list(days) and first.cached == []
    again = prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache")
    assert again.prepared == [] and again.cached == list(days)
    assert again.requests == first.requests == 600
    forced = prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache",
                             force=True)  # fmt: skip
    assert forced.prepared == list(days)


def test_a_changed_source_day_is_prepared_again(tmp_path):
    _, days = export_tiny(tmp_path / "src")
    prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache")
    export_tiny(tmp_path / "other", short=False)
    (tmp_path / "src" / "request_id_dict" / f"{days[1]}.pkl").write_bytes(
        (tmp_path / "other" / "request_id_dict" / f"{days[1]}.pkl").read_bytes()
    )
    (tmp_path / "src" / "all_stage" / f"{days[1]}.feather").write_bytes(
        (tmp_path / "other" / "all_stage" / f"{days[1]}.feather").read_bytes()
    )
    summary = prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache")
    assert summary.prepared == [days[1]] and summary.cached == [days[0], days[2]]


def test_open_cache_takes_the_chosen_days_in_order(tmp_path):
    world, days = export_tiny(tmp_path / "src")
    prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache",
                    sequence_length=10)  # fmt: skip
    data = open_cache(
        tmp_path / "cache", get_setting("recflow-2stage"), [days[0], days[2]]
    ).joined()
    rows = world.rows_of_days([0, 2])
    assert data.days() == [0, 1]
    assert torch.equal(data.request_id, world.request_id[rows])
    assert torch.equal(data.candidates, world.candidates[rows])


def test_a_setting_with_the_same_groups_may_use_the_cache_another_may_not(tmp_path):
    _, days = export_tiny(tmp_path / "src")
    prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache")
    data = open_cache(tmp_path / "cache", get_setting("synthetic-1stage"), days).joined()
    assert data.setting_name == "synthetic-1stage"
    with pytest.raises(CascbenchError, match="prepare a cache with --setting recflow-3stage"):
        open_cache(tmp_path / "cache", get_setting("recflow-3stage"), days)


def test_cache_identity_ignores_the_path_spelling_and_follows_the_days(tmp_path):
    _, days = export_tiny(tmp_path / "src")
    prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache")
    spelled = tmp_path / "src" / ".." / "cache"
    assert cache_identity(tmp_path / "cache", days) == cache_identity(spelled, days)
    assert cache_identity(tmp_path / "cache", days) != cache_identity(tmp_path / "cache", days[:2])


def test_load_dataset_and_train_run_on_a_recflow_cache(tmp_path):
    _, days = export_tiny(tmp_path / "src")
    prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache",
                    sequence_length=10)  # fmt: skip
    dataset = DatasetConfig(kind="recflow", data_dir=str(tmp_path / "cache"), days=days)
    data = load_dataset(dataset, "recflow-2stage")
    assert load_dataset(dataset, "recflow-2stage") is data  # one load per process and config
    config = RunConfig(
        setting="recflow-2stage",
        dataset=dataset,
        method="bce",
        train=TrainConfig(batch_size=64, device="cpu"),
    )
    record = train_run(config, data)
    assert record.stats["test_requests"] == 200
    assert record.stats["train_requests"] == 384  # 2 days of 200: 3 full batches of 64 each
    assert 0.0 <= record.metrics["joint_recall"] <= 1.0
    assert all(math.isfinite(v) for v in record.metrics.values())


def test_legacy_pickles_are_what_the_real_files_look_like(tmp_path):
    _, days = export_tiny(tmp_path / "src", legacy_pickles=True)
    raw = (tmp_path / "src" / "request_id_dict" / f"{days[0]}.pkl").read_bytes()
    assert raw[:2] == b"\x80\x03"  # protocol 3, Python 3.7's default
    assert b"cutils\ndefaultdict_tuple\n" in raw
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    assert b"numpy._core" not in raw
    with pytest.raises(ModuleNotFoundError, match="utils"):
        pickle.loads(raw)  # our own file: shows why RecFlow's pickles need the safe loader


def test_preparing_days_in_parallel_writes_the_same_cache(tmp_path):
    world, days = export_tiny(tmp_path / "src", "recflow-3stage")
    summary = prepare_recflow(tmp_path / "src", "recflow-3stage", days, tmp_path / "cache",
                              sequence_length=10, jobs=2)  # fmt: skip
    assert summary.prepared == list(days) and summary.requests == world.n_requests
    assert_same_arrays(
        open_cache(tmp_path / "cache", get_setting("recflow-3stage"), days).joined(), world
    )


def test_missing_positions_count_as_zero(tmp_path):
    world, days = export_tiny(tmp_path / "src", short=False)
    path = tmp_path / "src" / "all_stage" / f"{days[0]}.feather"
    table = feather.read_table(path)
    rank_index = np.asarray(table.column("rank_index")).copy()
    request = np.asarray(table.column("request_id"))
    video = np.asarray(table.column("video_id"))
    lost = np.flatnonzero(np.asarray(table.column("rank_pos")) == 1)[:3]
    rank_index[lost] = 0
    column = table.schema.get_field_index("rank_index")
    feather.write_feather(table.set_column(column, "rank_index", pa.array(rank_index)), path)
    summary = prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache",
                              sequence_length=10)  # fmt: skip
    assert any("3 rank_pos items have no rank_index (counted as 0, label 30)" in w
               for w in summary.warnings)  # fmt: skip
    data = open_cache(tmp_path / "cache", get_setting("recflow-2stage"), days).joined()
    expected = world.label.clone()
    for r_id, v_id in zip(request[lost], video[lost], strict=True):
        row = int(torch.nonzero(data.request_id == int(r_id))[0, 0])
        slot = int(torch.nonzero(data.candidates[row, :10, 0] == int(v_id) + 1)[0, 0])
        expected[row, slot] = 30.0
    assert torch.equal(data.label, expected)
    assert (
        read_manifest(tmp_path / "cache")["days"][days[0]]["stats"]["graded_without_position"] == 3
    )


def test_streaming_split_on_a_recflow_cache(tmp_path):
    _, days = export_tiny(tmp_path / "src")
    prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache",
                    sequence_length=10)  # fmt: skip
    dataset = DatasetConfig(kind="recflow", data_dir=str(tmp_path / "cache"), days=days)
    config = RunConfig(
        setting="recflow-2stage",
        dataset=dataset,
        method="bce",
        train=TrainConfig(batch_size=128, device="cpu", split="streaming"),
    )
    record = train_run(config, load_dataset(dataset, "recflow-2stage"))
    assert record.per_day["day"] == [1, 2]  # each day after the first, tested in turn


def test_feather_v1_files_are_read_too(tmp_path):
    world, days = export_tiny(tmp_path / "src", short=False)
    path = tmp_path / "src" / "all_stage" / f"{days[0]}.feather"
    with pytest.warns(DeprecationWarning):  # pyarrow deprecates writing V1; old dumps may be V1
        feather.write_feather(feather.read_table(path).combine_chunks(), path, version=1)
    with pytest.warns(DeprecationWarning):
        prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache",
                        sequence_length=10)  # fmt: skip
    assert_same_arrays(
        open_cache(tmp_path / "cache", get_setting("recflow-2stage"), days).joined(), world
    )


def test_export_refuses_a_first_day_of_another_weekday(tmp_path):
    from cascbench.datasets.recflow_writer import export_recflow

    world = tiny_world("recflow-2stage", short=False)
    with pytest.raises(CascbenchError, match=r"day 2024-01-14 is weekday 7 .* weekday 6"):
        export_recflow(world, get_setting("recflow-2stage"), tmp_path, first_day="2024-01-14")


def test_run_id_follows_the_cache_not_the_spelling_of_its_path(tmp_path):
    _, days = export_tiny(tmp_path / "src")
    prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache")

    def run_id(data_dir, chosen):
        dataset = DatasetConfig(kind="recflow", data_dir=str(data_dir), days=chosen)
        return RunConfig(setting="recflow-2stage", dataset=dataset, method="bce").run_id()

    spelled = tmp_path / "src" / ".." / "cache"
    assert run_id(tmp_path / "cache", days) == run_id(spelled, days)
    assert run_id(tmp_path / "cache", days) != run_id(tmp_path / "cache", days[:2])


def test_a_recflow_grid_without_a_cache_is_refused_before_running(tmp_path):
    from cascbench.datasets import check_dataset

    with pytest.raises(CascbenchError, match="cascbench data prepare recflow"):
        check_dataset(DatasetConfig(kind="recflow"))
    with pytest.raises(CascbenchError, match="is not a RecFlow cache"):
        check_dataset(DatasetConfig(kind="recflow", data_dir=str(tmp_path)))


def test_all_stage_written_in_chunks_of_requests_round_trips(tmp_path, monkeypatch):
    from cascbench.datasets import recflow_writer

    monkeypatch.setattr(recflow_writer, "_CHUNK_REQUESTS", 37)  # 200 a day: 6 chunks
    world, days = export_tiny(tmp_path / "src", "recflow-2stage")
    table = feather.read_table(tmp_path / "src" / "all_stage" / f"{days[0]}.feather")
    assert table.num_rows == int(world.mask[world.day == 0].sum())
    first = table.column("request_id").to_numpy()[:50]
    assert len(set(first.tolist())) > 1  # rows are shuffled, not grouped by request
    prepare_recflow(tmp_path / "src", "recflow-2stage", days, tmp_path / "cache",
                    sequence_length=world.sequence.shape[1])  # fmt: skip
    data = open_cache(tmp_path / "cache", get_setting("recflow-2stage"), days).joined()
    assert_same_arrays(data, world)
