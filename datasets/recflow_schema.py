"""RecFlow's on-disk schema (RECFLOW.md): file layout, column orders, id fields, days, time zone.

Facts only; reading is in `recflow_reader`, writing in `recflow_writer`. Ids on disk are 0-based;
the canonical arrays shift every id field by +1 so that 0 is padding (category_level_one too:
LCRON's unshifted level-one ids with padding 2 are a quirk of its code, not of the data).
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import TYPE_CHECKING

import numpy as np

from cascbench.errors import CascbenchError, unknown_name_error
from cascbench.fields import CANDIDATE_FIELDS, CONTEXT_FIELDS, ITEM_FIELDS

if TYPE_CHECKING:
    from cascbench.settings import Setting

ALL_STAGE_COLUMNS = (
    "request_id", "request_timestamp", "user_id", "device_id", "age", "gender", "province",
    "video_id", "author_id", "category_level_one", "category_level_two", "upload_type",
    "upload_timestamp", "duration", "realshow", "rerank_pos", "rerank_neg", "rank_pos", "rank_neg",
    "coarse_neg", "prerank_neg", "rank_index", "rerank_index", "playing_time", "effective_view",
    "long_view", "like", "follow", "forward", "comment",
)  # fmt: skip
#: The stage labels: all_stage flag columns and request_id_dict keys.
STAGE_LABELS = (
    "realshow", "rerank_pos", "rerank_neg", "rank_pos", "rank_neg", "coarse_neg", "prerank_neg",
)  # fmt: skip
#: Labels every request has (RECFLOW.md); realshow, coarse_neg and prerank_neg may be absent.
REQUIRED_LABELS = ("rerank_pos", "rerank_neg", "rank_pos", "rank_neg")
#: Nominal group sizes per request (RECFLOW.md); the settings take the first rows of each.
NOMINAL_SIZES = {
    "realshow": 6, "rerank_pos": 10, "rerank_neg": 10, "rank_pos": 10, "rank_neg": 10,
    "coarse_neg": 40, "prerank_neg": 40,
}  # fmt: skip
#: The graded groups and the all_stage column holding their logged position.
GRADED_INDEX = {"rank_pos": "rank_index", "rerank_pos": "rerank_index"}
#: Request-level all_stage columns, in the canonical context order after weekday/hour/minute.
REQUEST_COLUMNS = ("request_timestamp", *CONTEXT_FIELDS[3:])

#: Columns of a request_id_dict array [n, 8].
DICT_COLUMNS = (
    "video_id", "author_id", "duration", "category_level_two", "upload_type", "upload_timestamp",
    "category_level_one", "effective_view",
)  # fmt: skip
#: Columns of a seq_effective_50_dict array [50, 10].
SEQUENCE_COLUMNS = (
    "video_id", "author_id", "category_level_two", "category_level_one", "upload_type",
    "upload_timestamp", "duration", "request_timestamp", "playing_time", "request_id",
)  # fmt: skip
DICT_ITEM_COLUMNS = tuple(DICT_COLUMNS.index(f) for f in ITEM_FIELDS)
DICT_UPLOAD_COLUMN = DICT_COLUMNS.index("upload_timestamp")
# The item fields are the first five sequence columns: a slice, so selecting them copies nothing.
SEQUENCE_ITEM_COLUMNS = slice(0, len(ITEM_FIELDS))
assert SEQUENCE_COLUMNS[SEQUENCE_ITEM_COLUMNS] == ITEM_FIELDS
#: A sequence row is a real behaviour iff its request_timestamp is positive.
SEQUENCE_REAL_COLUMN = SEQUENCE_COLUMNS.index("request_timestamp")
SEQUENCE_LENGTH = 50

#: The id fields sized by others/id_cnt.pkl (context ids, then item ids).
ID_FIELDS = (*CONTEXT_FIELDS[3:], *ITEM_FIELDS)
#: Other spellings of id_cnt keys seen in RecFlow versions (after stripping blanks).
ID_CNT_ALIASES = {"photo_id": "video_id"}
#: Vocabulary sizes of the time fields (padding 0 included): weekday 1..7, hour 1..24, minute 1..60.
TIME_VOCABULARY = (8, 25, 61)

#: Kuaishou logs in China: local time is UTC+8 all year (no daylight saving).
UTC_OFFSET_SECONDS = 8 * 3600
TIME_ZONE = "UTC+08:00"
_SECONDS_PER_DAY = 86_400
# 1970-01-01 was a Thursday: weekday 3 when Monday is 0.
_EPOCH_WEEKDAY = 3

FIRST_DAY = "2024-01-13"
LAST_DAY = "2024-02-18"
#: RecFlow period 1 as the LCRON release uses it: train 2024-01-13 … 2024-02-03, test 2024-02-04.
PAPER_TEST_DAY = "2024-02-04"

ALL_STAGE_DIR, REQUEST_DICT_DIR, SEQUENCE_DICT_DIR = (
    "all_stage",
    "request_id_dict",
    "seq_effective_50_dict",
)
ID_CNT_FILE = "others/id_cnt.pkl"


def day_files(day: str) -> dict[str, str]:
    """The three per-day files, relative to the RecFlow root, by role."""
    return {
        "all_stage": f"{ALL_STAGE_DIR}/{day}.feather",
        "request_id_dict": f"{REQUEST_DICT_DIR}/{day}.pkl",
        "seq_effective_50_dict": f"{SEQUENCE_DICT_DIR}/{day}.pkl",
    }


def _parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise CascbenchError(f"day {text.strip()!r} is not a date YYYY-MM-DD.") from None


def day_range(first: str, last: str) -> tuple[str, ...]:
    """Every day from `first` to `last`, both included, as YYYY-MM-DD."""
    start, end = _parse_date(first), _parse_date(last)
    if end < start:
        raise CascbenchError(f"day range {first}..{last} ends before it starts.")
    return tuple(str(start + dt.timedelta(days=i)) for i in range((end - start).days + 1))


def shifted_day(first: str, offset: int) -> str:
    """The day `offset` days after `first`."""
    return str(_parse_date(first) + dt.timedelta(days=offset))


#: The paper's days in training order; the last one is the test day.
PAPER_DAYS = day_range(FIRST_DAY, PAPER_TEST_DAY)


def parse_days(text: str) -> tuple[str, ...]:
    """ "2024-01-13..2024-02-03,2024-02-04" -> the days in that order; "paper" -> PAPER_DAYS.

    Days must be valid dates, strictly increasing (the order is the training order).
    """
    if text.strip() == "paper":
        return PAPER_DAYS
    days: list[str] = []
    for part in text.split(","):
        first, dots, last = part.partition("..")
        if not part.strip():
            continue
        days.extend(day_range(first, last) if dots else (str(_parse_date(first)),))
    return check_days(days)


def check_days(days: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The days as a tuple of YYYY-MM-DD, after checking they are dates in increasing order."""
    parsed = [_parse_date(d) for d in days]
    if not parsed:
        raise CascbenchError("expected at least one day (YYYY-MM-DD, or FIRST..LAST).")
    for before, after in itertools.pairwise(parsed):
        if after <= before:
            raise CascbenchError(
                f"days must be strictly increasing (training order), got {before} then {after}."
            )
    return tuple(str(d) for d in parsed)


def day_start_seconds(day: str) -> int:
    """Unix seconds of local midnight (UTC+8) starting `day`."""
    midnight = dt.datetime.combine(_parse_date(day), dt.time(), dt.UTC)
    return int(midnight.timestamp()) - UTC_OFFSET_SECONDS


def local_time_ids(seconds: np.ndarray) -> np.ndarray:
    """int32 [n, 3]: weekday (1 = Monday … 7), hour + 1, minute + 1 of Unix seconds [n] in UTC+8."""
    days, second_of_day = np.divmod(seconds.astype(np.int64) + UTC_OFFSET_SECONDS, _SECONDS_PER_DAY)
    hour, second_of_hour = np.divmod(second_of_day, 3600)
    times = np.empty((len(days), 3), np.int32)
    times[:, 0] = (days + _EPOCH_WEEKDAY) % 7 + 1
    times[:, 1] = hour + 1
    times[:, 2] = second_of_hour // 60 + 1
    return times


def local_day_names(seconds: np.ndarray) -> np.ndarray:
    """The local (UTC+8) date of Unix seconds [n], as numpy datetime64[D] values."""
    local = seconds.astype(np.int64) + UTC_OFFSET_SECONDS
    return np.floor_divide(local, _SECONDS_PER_DAY).astype("datetime64[D]")


def normalise_id_cnt_key(key: object) -> str:
    """An id_cnt key as cascbench names it: blanks stripped, old spellings mapped."""
    name = str(key).strip()
    return ID_CNT_ALIASES.get(name, name)


def check_recflow_setting(setting: Setting) -> str:
    """The all_stage column with the graded group's positions, after checking that the setting's
    groups are RecFlow stage labels and that its first group is graded (rank_pos or rerank_pos)."""
    for group in setting.groups:
        if group.name not in STAGE_LABELS:
            raise unknown_name_error(f"RecFlow group (setting {setting.name!r})", group.name,
                                     STAGE_LABELS)  # fmt: skip
    first = setting.groups[0]
    if not first.graded or first.name not in GRADED_INDEX:
        raise CascbenchError(
            f"setting {setting.name!r}: RecFlow's ground truth must be a graded rank_pos or "
            f"rerank_pos group, got {first.name!r}."
        )
    return GRADED_INDEX[first.name]


def schema_vocabulary(id_counts: dict[str, int]) -> dict[str, tuple[tuple[str, int], ...]]:
    """FeatureSchema fields (name, vocabulary size with padding) from normalised id_cnt counts."""
    missing = [f for f in ID_FIELDS if f not in id_counts]
    if missing:
        raise CascbenchError(
            f"{ID_CNT_FILE}: no count for {', '.join(missing)}; it needs one for each of "
            f"{', '.join(ID_FIELDS)}."
        )
    context = tuple(zip(CONTEXT_FIELDS[:3], TIME_VOCABULARY, strict=True)) + tuple(
        (f, id_counts[f] + 1) for f in CONTEXT_FIELDS[3:]
    )
    return {
        "context_fields": context,
        "item_fields": tuple((f, id_counts[f] + 1) for f in ITEM_FIELDS),
        "candidate_fields": tuple(zip(CANDIDATE_FIELDS, TIME_VOCABULARY, strict=True)),
    }
