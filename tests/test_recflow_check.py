"""`data check recflow`: findings, the settled unknowns, and the CLI's exit codes end to end."""

import pickle
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pytest
import torch
from recflow_data import export_tiny
from typer.testing import CliRunner

from cascbench.cli import app
from cascbench.datasets.cache import open_cache
from cascbench.datasets.recflow_check import check_recflow
from cascbench.datasets.safe_pickle import safe_load
from cascbench.datasets.synthetic import get_world_config
from cascbench.datasets.world_cache import world_day_names
from cascbench.settings import get_setting

runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("recflow")
    _, days = export_tiny(root / "plain", short=False)
    export_tiny(root / "legacy", short=False, legacy_pickles=True, float_positions=True,
                legacy_id_cnt_keys=True)  # fmt: skip
    return root, days


@pytest.fixture
def src(exported, tmp_path):
    root, days = exported
    shutil.copytree(root / "plain", tmp_path / "src")
    return tmp_path / "src", days


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_a_clean_export_has_no_findings_for_its_setting(exported):
    root, days = exported
    report = check_recflow(root / "plain", settings=("recflow-2stage",))
    assert [d.day for d in report.days] == list(days)
    assert report.all_findings() == []
    assert [d.requests for d in report.days] == [200, 200, 200]
    assert report.days[0].groups["rank_pos"] == {"absent": 0, "short": 0, "truncated": 0,
                                                 "padded_slots": 0}  # fmt: skip
    assert report.days[0].without_position == {"rerank_pos": 0, "rank_pos": 0}


def test_groups_a_setting_needs_but_the_files_lack_are_warnings(exported):
    root, _ = exported
    report = check_recflow(root / "plain")  # both settings: rerank groups are missing
    messages = [f.message for f in report.all_findings()]
    assert report.n_errors == 0 and report.n_warnings == 6
    assert "group 'rerank_pos' is absent in 200 and shorter than 10 in 0 of 200" in messages[0]


def test_settled_unknowns_of_an_int_export(exported):
    root, days = exported
    settled = check_recflow(root / "plain").settled
    rank = settled["positions"]["rank_index"]
    assert rank["dtype"] == ["int64"]
    assert rank["range_on_flagged_rows"] == [1, 10]
    assert rank["values_elsewhere (sentinel)"] == [0]
    rows = sum(int(feather.read_table(root / "plain" / "all_stage" / f"{d}.feather").num_rows)
               for d in days)  # fmt: skip
    assert settled["flags_per_row"] == {1: rows}
    assert settled["pickle_containers"] == {
        "id_cnt": ["dict"],
        "request_id_dict": ["dict of dict"],
        "seq_effective_50_dict": ["dict"],
    }
    assert settled["sequence_array_shapes"] == [(50, 10)]
    assert settled["requests_on_their_day_in_UTC+8"] == "600/600"


def test_settled_unknowns_of_a_legacy_export(exported):
    root, _ = exported
    report = check_recflow(root / "legacy", settings=("recflow-2stage",))
    rank = report.settled["positions"]["rank_index"]
    assert rank["dtype"] == ["double"]
    assert rank["values_elsewhere (sentinel)"] == ["NaN"]
    assert report.settled["pickle_containers"]["request_id_dict"] == [
        "defaultdict(utils.defaultdict_tuple) of defaultdict(tuple)"
    ]
    assert report.id_cnt["renamed_keys"] == {
        "photo_id": "video_id",
        " category_level_two": "category_level_two",
    }
    assert report.all_findings() == []


def test_rows_with_two_flags_and_missing_positions_are_reported(src):
    root, days = src
    path = root / "all_stage" / f"{days[0]}.feather"
    table = feather.read_table(path)
    rank_pos = np.asarray(table.column("rank_pos"))
    rank_neg = np.asarray(table.column("rank_neg")).copy()
    rank_index = np.asarray(table.column("rank_index")).copy()
    flagged = np.flatnonzero(rank_pos == 1)
    rank_neg[flagged[:3]] = 1  # three rows carry two flags
    rank_index[flagged[3:7]] = 0  # four rank_pos items lose their position
    table = table.set_column(
        table.schema.get_field_index("rank_neg"), "rank_neg", pa.array(rank_neg)
    )
    table = table.set_column(
        table.schema.get_field_index("rank_index"), "rank_index", pa.array(rank_index)
    )
    feather.write_feather(table, path)
    report = check_recflow(root, settings=("recflow-2stage",))
    assert report.settled["flags_per_row"][2] == 3
    assert report.days[0].without_position["rank_pos"] == 4
    assert report.settled["positions"]["rank_index"]["empty_on_flagged_rows"] == 4
    assert report.n_errors == 0
    assert any("4 rank_pos items" in f.message for f in report.days[0].findings)


def test_errors_are_collected_per_day_not_raised(src):
    root, days = src
    counts = safe_load(root / "others" / "id_cnt.pkl")
    counts["upload_type"] = 1
    counts["request_id"] = 10**6  # a key cascbench does not use
    (root / "others" / "id_cnt.pkl").write_bytes(pickle.dumps(counts))
    (root / "request_id_dict" / f"{days[1]}.pkl").write_bytes(b"garbage")
    report = check_recflow(root, settings=("recflow-2stage",))
    assert report.id_cnt["unknown_keys"] == ["request_id"]
    assert report.days[1].requests is None
    assert "not a readable pickle" in report.days[1].findings[0].message
    upload = [f for f in report.days[0].findings if "upload_type = " in f.message]
    assert upload and all(f.level == "error" for f in upload)
    assert {f.file for f in upload} >= {
        f"request_id_dict/{days[0]}.pkl",
        f"all_stage/{days[0]}.feather",
    }


def test_cli_export_check_prepare_end_to_end(tmp_path):
    src, cache = tmp_path / "src", tmp_path / "cache"
    result = invoke("data", "export-recflow", "--world", "tiny", "--out", src, "--legacy-pickles")
    assert result.exit_code == 0, result.output
    assert "600 requests over 3 days (2024-01-13 … 2024-01-15)" in result.output
    result = invoke("data", "check", "recflow", "--src", src, "--setting", "recflow-2stage")
    assert result.exit_code == 0, result.output
    assert "no errors: 0 error(s), 0 warning(s)." in result.output
    days = "2024-01-13..2024-01-15"
    result = invoke("data", "prepare", "recflow", "--src", src, "--days", days, "--out", cache)
    assert result.exit_code == 0, result.output
    assert "3 day(s) prepared, 0 already cached; 600 requests" in result.output
    result = invoke("data", "prepare", "recflow", "--src", src, "--days", days, "--out", cache)
    assert "0 day(s) prepared, 3 already cached" in result.output
    assert (cache / "days" / "2024-01-15" / "candidates.npy").is_file()


def test_cli_exit_codes(src, tmp_path):
    root, days = src
    assert invoke("data", "check", "recflow", "--src", tmp_path / "nowhere").exit_code == 2
    (root / "seq_effective_50_dict" / f"{days[0]}.pkl").write_bytes(b"garbage")
    result = invoke("data", "check", "recflow", "--src", root, "--setting", "recflow-2stage")
    assert result.exit_code == 1
    assert "errors found: 1 error(s)" in result.output
    result = invoke(
        "data", "prepare", "recflow", "--src", root, "--days", "all", "--out", tmp_path / "c"
    )
    assert result.exit_code == 2
    assert f"seq_effective_50_dict/{days[0]}.pkl: not a readable pickle" in result.output


def test_export_day_by_day_writes_the_world_that_prepare_world_caches(tmp_path):
    """`export-recflow --day-by-day` draws with generate_days, one day in memory: prepared back,
    its days are the arrays `data prepare world` caches for the same world and seed."""
    src, cache, world = tmp_path / "src", tmp_path / "cache", tmp_path / "world"
    result = invoke("data", "export-recflow", "--world", "tiny", "--world-seed", "3",
                    "--day-by-day", "--out", src)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "600 requests over 3 days" in result.output
    days = "2024-01-13..2024-01-15"
    length = get_world_config("tiny").sequence_length
    result = invoke("data", "prepare", "recflow", "--src", src, "--days", days, "--out", cache,
                    "--sequence-length", str(length))  # fmt: skip
    assert result.exit_code == 0, result.output
    result = invoke(
        "data", "prepare", "world", "--world", "tiny", "--world-seed", "3", "--out", world
    )
    assert result.exit_code == 0, result.output
    setting = get_setting("recflow-2stage")
    names = world_day_names(get_world_config("tiny"))
    exported, drawn = open_cache(cache, setting, names), open_cache(world, setting, names)
    for day in range(3):
        for name in ("context", "sequence", "sequence_mask", "candidates", "label", "mask"):
            got, expected = (
                getattr(exported.day_data(day), name),
                getattr(drawn.day_data(day), name),
            )
            assert torch.equal(got, expected), (day, name)
