"""Every kind of bad RecFlow input gets a message naming the file, request or column, and a failed
day leaves no partial cache."""

import json
import os
import pickle
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pytest
from recflow_data import export_tiny

from cascbench.datasets import load_dataset
from cascbench.datasets.cache import open_cache, prepare_recflow, read_manifest
from cascbench.datasets.safe_pickle import ForbiddenPickleError, safe_load
from cascbench.errors import CascbenchError, validate_fields
from cascbench.experiment.config import DatasetConfig
from cascbench.settings import get_setting

pytestmark = pytest.mark.faults

SETTING = "recflow-2stage"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("recflow")
    _, days = export_tiny(root / "src", short=False)
    return root / "src", days


@pytest.fixture
def src(exported, tmp_path):
    """A fresh copy of the exported folder, and its days."""
    source, days = exported
    shutil.copytree(source, tmp_path / "src")
    return tmp_path / "src", days


def prepare(src, days, tmp_path, **options):
    return prepare_recflow(src, SETTING, days, tmp_path / "cache", sequence_length=10, **options)


def load(path):
    return safe_load(path)


def dump(path, value):
    path.write_bytes(pickle.dumps(value, protocol=4))


def test_missing_folder(tmp_path):
    with pytest.raises(CascbenchError, match=r"RecFlow folder .*nowhere not found \(--src\)"):
        prepare(tmp_path / "nowhere", ["2024-01-13"], tmp_path)


def test_missing_sub_folder(src, tmp_path):
    root, days = src
    shutil.rmtree(root / "seq_effective_50_dict")
    with pytest.raises(CascbenchError, match=r"day 2024-01-13 is missing .*seq_effective_50_dict"):
        prepare(root, days, tmp_path)


def test_missing_day_lists_the_days_present(src, tmp_path):
    root, days = src
    with pytest.raises(CascbenchError, match=r"day 2024-01-16 is missing.*2024-01-13 … 2024-01-15"):
        prepare(root, [*days, "2024-01-16"], tmp_path)


def test_missing_id_cnt(src, tmp_path):
    root, days = src
    (root / "others" / "id_cnt.pkl").unlink()
    with pytest.raises(CascbenchError, match=r"others/id_cnt.pkl: file not found"):
        prepare(root, days, tmp_path)


def test_id_cnt_without_a_field(src, tmp_path):
    root, days = src
    counts = load(root / "others" / "id_cnt.pkl")
    del counts["author_id"]
    dump(root / "others" / "id_cnt.pkl", counts)
    with pytest.raises(CascbenchError, match=r"id_cnt.pkl: no count for author_id"):
        prepare(root, days, tmp_path)


def test_id_cnt_spellings_that_disagree(src, tmp_path):
    root, days = src
    counts = load(root / "others" / "id_cnt.pkl")
    counts["photo_id"] = counts["video_id"] + 1
    dump(root / "others" / "id_cnt.pkl", counts)
    with pytest.raises(CascbenchError, match=r"two spellings of 'video_id' disagree"):
        prepare(root, days, tmp_path)


def test_truncated_feather(src, tmp_path):
    root, days = src
    path = root / "all_stage" / f"{days[0]}.feather"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(
        CascbenchError, match=rf"all_stage/{days[0]}.feather: not a readable Feather"
    ):
        prepare(root, days, tmp_path)


def test_corrupt_feather(src, tmp_path):
    root, days = src
    path = root / "all_stage" / f"{days[0]}.feather"
    data = bytearray(path.read_bytes())
    middle = slice(len(data) // 4, 3 * len(data) // 4)  # record batches, not schema or footer
    data[middle] = b"\xff" * (middle.stop - middle.start)
    path.write_bytes(bytes(data))
    with pytest.raises(CascbenchError, match=rf"all_stage/{days[0]}.feather: .*corrupt"):
        prepare(root, days, tmp_path)


def test_feather_without_a_column(src, tmp_path):
    root, days = src
    path = root / "all_stage" / f"{days[0]}.feather"
    table = feather.read_table(path)
    feather.write_feather(table.drop_columns(["rank_index"]), path)
    with pytest.raises(
        CascbenchError, match=r"all_stage/2024-01-13.feather: missing column.*rank_index"
    ):
        prepare(root, days, tmp_path)


def test_feather_with_empty_values(src, tmp_path):
    root, days = src
    path = root / "all_stage" / f"{days[0]}.feather"
    table = feather.read_table(path)
    user = table.column("user_id").to_pylist()
    user[3] = None
    table = table.set_column(table.schema.get_field_index("user_id"), "user_id", pa.array(user))
    feather.write_feather(table, path)
    with pytest.raises(CascbenchError, match=r"column 'user_id' has 1 empty values"):
        prepare(root, days, tmp_path)


def test_truncated_pickle(src, tmp_path):
    root, days = src
    path = root / "request_id_dict" / f"{days[1]}.pkl"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(
        CascbenchError, match=rf"request_id_dict/{days[1]}.pkl: not a readable pickle"
    ):
        prepare(root, days, tmp_path)


def test_pickle_with_a_forbidden_class_runs_nothing(src, tmp_path):
    root, days = src
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (root / "seq_effective_50_dict" / f"{days[0]}.pkl").write_bytes(pickle.dumps({1: Exploit()}))
    with pytest.raises(ForbiddenPickleError, match=r"seq_effective_50_dict/2024-01-13.pkl.*system"):
        prepare(root, days, tmp_path)
    assert not marker.exists()


def test_pickle_that_is_not_a_mapping(src, tmp_path):
    root, days = src
    dump(root / "request_id_dict" / f"{days[0]}.pkl", [1, 2, 3])
    with pytest.raises(CascbenchError, match=r"expected a mapping request_id -> value, got list"):
        prepare(root, days, tmp_path)


def test_pickle_with_non_integer_keys(src, tmp_path):
    root, days = src
    path = root / "request_id_dict" / f"{days[0]}.pkl"
    mapping = load(path)
    mapping["abc"] = next(iter(mapping.values()))
    dump(path, mapping)
    with pytest.raises(CascbenchError, match=r"keys must be integer request ids, found 'abc'"):
        prepare(root, days, tmp_path)


def test_request_mapped_to_something_else_than_a_mapping(src, tmp_path):
    root, days = src
    path = root / "request_id_dict" / f"{days[0]}.pkl"
    mapping = load(path)
    key = sorted(mapping)[7]
    mapping[key] = np.zeros((10, 8), np.int64)
    dump(path, mapping)
    with pytest.raises(CascbenchError, match=rf"request {key} maps to ndarray"):
        prepare(root, days, tmp_path)


def test_group_array_of_the_wrong_shape(src, tmp_path):
    root, days = src
    path = root / "request_id_dict" / f"{days[0]}.pkl"
    mapping = load(path)
    key = sorted(mapping)[3]
    mapping[key]["rank_neg"] = mapping[key]["rank_neg"][:, :7]
    dump(path, mapping)
    with pytest.raises(
        CascbenchError,
        match=rf"group 'rank_neg' of request {key} has shape \(10, 7\)",
    ):
        prepare(root, days, tmp_path)


def test_sequence_of_the_wrong_shape(src, tmp_path):
    root, days = src
    path = root / "seq_effective_50_dict" / f"{days[2]}.pkl"
    mapping = load(path)
    key = sorted(mapping)[0]
    mapping[key] = mapping[key][:, :9]
    dump(path, mapping)
    with pytest.raises(CascbenchError, match=rf"request {key} has a sequence of shape \(50, 9\)"):
        prepare(root, days, tmp_path)


def test_sequences_of_different_lengths_are_padded_on_top(src, tmp_path):
    root, days = src
    path = root / "seq_effective_50_dict" / f"{days[0]}.pkl"
    mapping = load(path)
    key = sorted(mapping)[0]
    expected = mapping[key][-10:]
    mapping[key] = mapping[key][-12:]  # only 12 rows: the reader right-aligns it
    dump(path, mapping)
    prepare(root, days, tmp_path)
    data = open_cache(tmp_path / "cache", get_setting(SETTING), days).joined()
    real = expected[:, 7] > 0
    assert data.sequence_mask[0].numpy().tolist() == real.tolist()
    assert (data.sequence[0, real, 0].numpy() == expected[real, 0] + 1).all()


def test_request_missing_from_the_sequences(src, tmp_path):
    root, days = src
    path = root / "seq_effective_50_dict" / f"{days[1]}.pkl"
    mapping = load(path)
    key = sorted(mapping)[5]
    del mapping[key]
    dump(path, mapping)
    with pytest.raises(
        CascbenchError,
        match=rf"request_id_dict/{days[1]}.pkl: no entry in seq_effective_50_dict/{days[1]}.pkl "
        rf"for request {key};",
    ):
        prepare(root, days, tmp_path)


def test_request_missing_from_all_stage(src, tmp_path):
    root, days = src
    path = root / "all_stage" / f"{days[0]}.feather"
    table = feather.read_table(path)
    key = table.column("request_id")[0].as_py()
    keep = np.asarray(table.column("request_id")) != key
    feather.write_feather(table.filter(pa.array(keep)), path)
    with pytest.raises(
        CascbenchError, match=rf"no entry in all_stage/{days[0]}.feather for request {key};"
    ):
        prepare(root, days, tmp_path)


def test_request_only_in_the_sequences_is_left_out_with_a_warning(src, tmp_path):
    root, days = src
    path = root / "seq_effective_50_dict" / f"{days[0]}.pkl"
    mapping = load(path)
    mapping[10**12] = next(iter(mapping.values()))
    dump(path, mapping)
    summary = prepare(root, days, tmp_path)
    assert any(
        f"no entry in request_id_dict/{days[0]}.pkl for request 1000000000000; left out" in w
        for w in summary.warnings
    )
    stats = read_manifest(tmp_path / "cache")["days"][days[0]]["stats"]
    assert stats["dropped_only_in_seq_effective_50_dict"] == 1
    assert stats["requests"] == 200


def test_id_outside_id_cnt_in_a_group(src, tmp_path):
    root, days = src
    counts = load(root / "others" / "id_cnt.pkl")
    path = root / "request_id_dict" / f"{days[0]}.pkl"
    mapping = load(path)
    key = sorted(mapping)[4]
    mapping[key]["rank_neg"][2, 0] = counts["video_id"]  # one past the last raw id
    dump(path, mapping)
    with pytest.raises(
        CascbenchError,
        match=rf"group 'rank_neg': video_id = {counts['video_id']} \(request {key}; "
        rf"1 such values\) is outside 0..{counts['video_id'] - 1}",
    ):
        prepare(root, days, tmp_path)


def test_negative_id_in_all_stage(src, tmp_path):
    root, days = src
    path = root / "all_stage" / f"{days[2]}.feather"
    table = feather.read_table(path)
    province = np.asarray(table.column("province")).copy()
    request = np.asarray(table.column("request_id"))
    province[request == request[0]] = -1
    index = table.schema.get_field_index("province")
    feather.write_feather(table.set_column(index, "province", pa.array(province)), path)
    with pytest.raises(
        CascbenchError,
        match=rf"all_stage/{days[2]}.feather: request columns: "
        rf"province = -1 \(request {request[0]};",
    ):
        prepare(root, days, tmp_path)


def test_id_outside_id_cnt_in_a_sequence(src, tmp_path):
    root, days = src
    counts = load(root / "others" / "id_cnt.pkl")
    counts["author_id"] = 3
    dump(root / "others" / "id_cnt.pkl", counts)
    with pytest.raises(
        CascbenchError, match=r"(group 'rank_pos'|behaviour sequence): author_id = \d+ .*0..2"
    ):
        prepare(root, days, tmp_path)


def test_a_failed_day_leaves_no_partial_cache(src, tmp_path):
    root, days = src
    path = root / "request_id_dict" / f"{days[2]}.pkl"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CascbenchError, match=days[2]):
        prepare(root, days, tmp_path)
    manifest = read_manifest(tmp_path / "cache")
    assert sorted(manifest["days"]) == list(days[:2])
    assert sorted(p.name for p in (tmp_path / "cache" / "days").iterdir()) == list(days[:2])
    with pytest.raises(CascbenchError, match=rf"has no day {days[2]}; cached days: {days[0]}"):
        open_cache(tmp_path / "cache", get_setting(SETTING), days)


def test_a_failed_day_in_parallel_leaves_the_other_days_recorded(src, tmp_path):
    root, days = src
    path = root / "request_id_dict" / f"{days[1]}.pkl"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CascbenchError, match=rf"request_id_dict/{days[1]}.pkl: not a readable"):
        prepare(root, days, tmp_path, jobs=2)
    recorded = sorted(read_manifest(tmp_path / "cache")["days"])
    assert days[1] not in recorded and days[0] in recorded
    assert sorted(p.name for p in (tmp_path / "cache" / "days").iterdir()) == recorded


def test_a_day_failing_while_written_leaves_nothing(src, tmp_path, monkeypatch):
    root, days = src
    prepare(root, days[:1], tmp_path)
    saved = []

    def failing_save(path, array):
        saved.append(path)
        if len(saved) == 3:
            raise OSError("disk full")
        with open(path, "wb") as handle:
            np.lib.format.write_array(handle, array)

    monkeypatch.setattr("cascbench.datasets.cache.np.save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        prepare(root, days, tmp_path)
    assert sorted(p.name for p in (tmp_path / "cache" / "days").iterdir()) == [days[0]]
    assert sorted(read_manifest(tmp_path / "cache")["days"]) == [days[0]]


def test_a_cache_prepared_differently_needs_force(src, tmp_path):
    root, days = src
    prepare(root, days, tmp_path)
    with pytest.raises(
        CascbenchError, match=r"prepared differently \(sequence_length differ\).*--force"
    ):
        prepare_recflow(root, SETTING, days, tmp_path / "cache", sequence_length=20)
    summary = prepare_recflow(root, SETTING, days[:1], tmp_path / "cache", sequence_length=20,
                              force=True)  # fmt: skip
    assert summary.prepared == [days[0]]
    assert sorted(read_manifest(tmp_path / "cache")["days"]) == [days[0]]
    assert sorted(p.name for p in (tmp_path / "cache" / "days").iterdir()) == [days[0]]


def test_out_folder_that_is_not_a_cache(src, tmp_path):
    root, days = src
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "notes.txt").write_text("mine")
    with pytest.raises(CascbenchError, match=r"is not empty and is not a cascbench cache"):
        prepare(root, days, tmp_path)


def test_open_something_that_is_not_a_cache(tmp_path):
    with pytest.raises(CascbenchError, match=r"is not a RecFlow cache \(no manifest.json\)"):
        open_cache(tmp_path, get_setting(SETTING))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kind": "recflow", "data_dir": "c", "world": "tiny"}, "a recflow dataset has none"),
        ({"kind": "recflow", "data_dir": "c", "world_options": {"days": 2}}, "has none"),
        ({"data_dir": "c"}, "for recflow datasets"),
        ({"kind": "recflow", "data_dir": "c", "days": "2024-01-14,2024-01-13"}, "increasing"),
        ({"kind": "recflow", "data_dir": "c", "days": ["2024-02-30"]}, "not a date"),
    ],
)
def test_dataset_config_validation(values, message):
    with pytest.raises(CascbenchError, match=message):
        validate_fields("dataset", DatasetConfig, values)


def test_a_recflow_dataset_without_data_dir_cannot_be_loaded():
    config = DatasetConfig(kind="recflow")  # valid: presets leave it for --data-dir to fill
    with pytest.raises(CascbenchError, match=r"needs data_dir \(--data-dir CACHE\)"):
        load_dataset(config, SETTING)


def test_dataset_config_days_default_and_ranges():
    assert DatasetConfig(kind="recflow", data_dir="c").days is None  # the paper's days
    config = DatasetConfig(kind="recflow", data_dir="c", days="2024-02-01..2024-02-03,2024-02-05")
    assert config.days == ("2024-02-01", "2024-02-02", "2024-02-03", "2024-02-05")


def test_a_day_with_a_file_missing_is_listed_then_refused_not_dropped(src, tmp_path):
    from cascbench.datasets.cache import available_days

    root, days = src
    (root / "all_stage" / f"{days[1]}.feather").unlink()  # its pickles stay
    assert available_days(root) == sorted(days)
    with pytest.raises(CascbenchError, match=rf"day {days[1]} is missing .*all_stage/{days[1]}"):
        prepare(root, available_days(root), tmp_path)


@pytest.fixture
def prepared(src, tmp_path):
    root, days = src
    prepare(root, days, tmp_path)
    return tmp_path / "cache", days


def without_recorded_arrays(cache):
    """The cache as prepared before the manifest recorded shapes and hashes: the value checks
    are then what stands between a damaged file and the run."""
    manifest = read_manifest(cache)
    for entry in manifest["days"].values():
        entry.pop("arrays", None)
    (cache / "manifest.json").write_text(json.dumps(manifest))


def test_a_nan_label_in_a_cache_names_the_day_array_and_row(prepared):
    cache, days = prepared
    without_recorded_arrays(cache)
    file = cache / "days" / days[0] / "label.npy"
    label = np.load(file)
    label[3, 0] = np.nan
    np.save(file, label)
    with pytest.raises(CascbenchError, match=rf"{days[0]}/label.npy: request row 3 .*not a finite"):
        open_cache(cache, get_setting(SETTING), days)


def test_a_truncated_cache_array_names_the_file(prepared):
    cache, days = prepared
    file = cache / "days" / days[-1] / "candidates.npy"
    file.write_bytes(file.read_bytes()[:200])
    with pytest.raises(CascbenchError, match=rf"{days[-1]}/candidates.npy cannot be read"):
        open_cache(cache, get_setting(SETTING), days)


def test_the_manifest_records_each_arrays_shape_dtype_and_hash(prepared):
    cache, days = prepared
    entry = read_manifest(cache)["days"][days[0]]["arrays"]["label"]
    label = np.load(cache / "days" / days[0] / "label.npy")
    assert entry["shape"] == list(label.shape) and entry["dtype"] == "float32"
    assert len(entry["sha256"]) == 64


@pytest.mark.parametrize(
    ("array", "change", "message"),
    [
        (
            "candidates",
            lambda a: a.__setitem__((2, 0, 0), 10**8),
            r"candidates.npy: request row 2 .*outside its field's vocabulary",
        ),
        ("context", lambda a: a.__setitem__((5, 3), -1), r"context.npy: request row 5 .*outside"),
        ("mask", lambda a: a.astype(np.float32), r"mask.npy: dtype float32, not bool"),
        ("label", lambda a: a[:-1], r"different numbers of requests"),
    ],
)
def test_a_cache_array_that_is_not_what_prepare_wrote_is_named(prepared, array, change, message):
    cache, days = prepared
    without_recorded_arrays(cache)
    file = cache / "days" / days[1] / f"{array}.npy"
    values = np.load(file)
    changed = change(values)
    np.save(file, values if changed is None else changed)
    with pytest.raises(CascbenchError, match=message):
        open_cache(cache, get_setting(SETTING), days)


def test_a_recorded_shape_or_dtype_that_differs_is_named(prepared):
    cache, days = prepared
    manifest = read_manifest(cache)
    manifest["days"][days[1]]["arrays"]["mask"]["dtype"] = "float32"
    (cache / "manifest.json").write_text(json.dumps(manifest))
    (cache / "days" / days[1] / ".verified.json").unlink(missing_ok=True)
    with pytest.raises(CascbenchError, match=r"mask.npy: shape .* the manifest recorded"):
        open_cache(cache, get_setting(SETTING), days)


@pytest.mark.parametrize("array", ["candidates", "label", "mask"])
def test_a_cache_array_changed_after_prepare_fails_its_hash(prepared, array):
    cache, days = prepared
    setting = get_setting(SETTING)
    open_cache(cache, setting, days)  # verified once: the stamp lets later opens skip hashing
    assert (cache / "days" / days[1] / ".verified.json").is_file()
    file = cache / "days" / days[1] / f"{array}.npy"
    values = np.load(file)
    other = np.flatnonzero(values.ravel() != values.flat[0])[0]
    values.flat[0] = values.flat[other]  # another valid value: only the hash can tell
    np.save(file, values)
    with pytest.raises(CascbenchError, match=rf"{array}.npy: its content differs .*SHA-256"):
        open_cache(cache, setting, days)
