"""`cascbench data check recflow`: what a RecFlow folder holds, what is wrong with it, and which of
RECFLOW.md's unknowns its files settle.

Errors would corrupt training (a file that cannot be read, a pickle of the wrong shape or with a
forbidden class, a request missing from one of a day's files, an id outside id_cnt); warnings are
what the settings absorb (short or absent groups are padded, a missing rank_index counts as 0,
requests only one file holds are left out). The check reads exactly what `prepare` reads, with the
same code, for every stage label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cascbench.datasets.recflow_files import (
    Finding,
    Findings,
    IdCounts,
    int_column,
    read_id_counts,
    read_request_mapping,
    scan_all_stage,
)
from cascbench.datasets.recflow_reader import (
    check_ids,
    gather_group,
    group_stats,
    lookup_positions,
    match_requests,
    read_sequences,
    request_context,
)
from cascbench.datasets.recflow_schema import (
    DICT_ITEM_COLUMNS,
    GRADED_INDEX,
    ID_CNT_FILE,
    ID_FIELDS,
    ITEM_FIELDS,
    REQUIRED_LABELS,
    SEQUENCE_LENGTH,
    STAGE_LABELS,
    check_days,
    day_files,
    local_day_names,
)
from cascbench.errors import CascbenchError
from cascbench.settings import get_setting

# Distinct off-flag values of a position column worth listing (the sentinel is one or two).
_MAX_LISTED_VALUES = 5
RECFLOW_SETTINGS = ("recflow-2stage", "recflow-3stage")
# Rows taken per request when checking ids: every row, not only the settings' first ones.
_ALL_ROWS = 1 << 30


def _slots_per_label() -> dict[str, int]:
    """Slots the built-in RecFlow settings give each label (realshow: none, nominal 6)."""
    slots = {"realshow": 6}
    for name in RECFLOW_SETTINGS:
        for group in get_setting(name).groups:
            slots.setdefault(group.name, group.size)
    return slots


@dataclass
class DayCheck:
    """One day: request count, per-label group counts (absent, short, truncated, padded slots),
    graded items whose position was not found, and the day's findings."""

    day: str
    requests: int | None = None
    groups: dict[str, dict[str, int]] = field(default_factory=dict)
    without_position: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


@dataclass
class CheckReport:
    """The whole check: id_cnt, every day, and the settled unknowns (JSON-ready values)."""

    root: str
    days: list[DayCheck] = field(default_factory=list)
    id_cnt: dict[str, Any] = field(default_factory=dict)
    settled: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def all_findings(self) -> list[Finding]:
        return self.findings + [f for d in self.days for f in d.findings]

    @property
    def n_errors(self) -> int:
        return sum(f.level == "error" for f in self.all_findings())

    @property
    def n_warnings(self) -> int:
        return sum(f.level == "warning" for f in self.all_findings())


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


class _Unknowns:
    """Accumulates, batch by batch and day by day, what RECFLOW.md leaves open."""

    def __init__(self) -> None:
        self.flags_per_row: Counter[int] = Counter()
        self.position_types: dict[str, set[str]] = {c: set() for c in GRADED_INDEX.values()}
        self.off_flag_values: dict[str, set[float | str]] = {
            c: set() for c in GRADED_INDEX.values()
        }
        self.off_flag_more: dict[str, bool] = dict.fromkeys(GRADED_INDEX.values(), False)
        self.on_flag_range: dict[str, list[float]] = {}
        self.on_flag_empty: Counter[str] = Counter()
        self.containers: dict[str, set[str]] = {}
        self.sequence_shapes: set[tuple[int, ...]] = set()
        self.local_day_match = [0, 0]

    def observe(self, batch: pa.RecordBatch, relative: str) -> None:
        flags = np.stack([int_column(batch, f, relative) for f in STAGE_LABELS], axis=1)
        self.flags_per_row.update(dict(zip(*np.unique(flags.sum(1), return_counts=True),
                                           strict=True)))  # fmt: skip
        for flag, column in GRADED_INDEX.items():
            self.position_types[column].add(str(batch.schema.field(column).type))
            values = np.asarray(batch.column(column).to_numpy(zero_copy_only=False), np.float64)
            on = flags[:, STAGE_LABELS.index(flag)] == 1
            off_values = np.unique(values[~on])
            listed = self.off_flag_values[column]
            listed.update(
                "NaN" if np.isnan(v) else float(v) for v in off_values[:_MAX_LISTED_VALUES]
            )
            if len(off_values) > _MAX_LISTED_VALUES or len(listed) > _MAX_LISTED_VALUES:
                self.off_flag_more[column] = True
            flagged = values[on]
            empty = ~np.isfinite(flagged) | (flagged <= 0)
            self.on_flag_empty[column] += int(empty.sum())
            if (~empty).any():
                low, high = flagged[~empty].min(), flagged[~empty].max()
                known = self.on_flag_range.get(column, [low, high])
                self.on_flag_range[column] = [min(known[0], low), max(known[1], high)]

    def settled(self) -> dict[str, Any]:
        positions = {}
        for column in GRADED_INDEX.values():
            values = sorted(
                self.off_flag_values[column], key=lambda v: (v == "NaN", 0.0 if v == "NaN" else v)
            )
            listed = [v if v == "NaN" else _number(v) for v in values[:_MAX_LISTED_VALUES]]
            positions[column] = {
                "dtype": sorted(self.position_types[column]),
                "range_on_flagged_rows": [_number(v) for v in self.on_flag_range.get(column, [])]
                or None,
                "empty_on_flagged_rows": self.on_flag_empty[column],
                "values_elsewhere (sentinel)": listed
                + (["…"] if self.off_flag_more[column] else []),
            }
        matched, total = self.local_day_match
        return {
            "positions": positions,
            "flags_per_row": {int(k): int(v) for k, v in sorted(self.flags_per_row.items())},
            "pickle_containers": {k: sorted(v) for k, v in self.containers.items()},
            "sequence_array_shapes": sorted(self.sequence_shapes),
            "requests_on_their_day_in_UTC+8": f"{matched}/{total}",
        }


def check_recflow(
    src: Path | str,
    days: tuple[str, ...] | list[str] | None = None,
    settings: tuple[str, ...] = RECFLOW_SETTINGS,
    on_day: Callable[[str], None] | None = None,
) -> CheckReport:
    """Check the RecFlow folder `src`, day by day (default: every day with an all_stage file).

    Short groups of the `settings`' labels, and absent ones among the labels every request should
    have, are warnings; every label's counts are in the report.

    Raises CascbenchError only when `src` is not a folder or holds no day; every other problem is
    a finding of the report.
    """
    from cascbench.datasets.cache import available_days

    root = Path(src)
    if not root.is_dir():
        raise CascbenchError(f"RecFlow folder {root} not found (--src).")
    days = check_days(days) if days is not None else tuple(available_days(root))
    if not days:
        raise CascbenchError(f"{root}: no all_stage/<day>.feather file; is it a RecFlow folder?")
    labels = {g.name for name in settings for g in get_setting(name).groups}
    report = CheckReport(str(root))
    unknowns = _Unknowns()
    id_counts = _check_id_cnt(root, report, unknowns)
    for day in days:
        if on_day:
            on_day(day)
        check = DayCheck(day)
        findings = Findings(strict=False)
        try:
            _check_day(root, day, id_counts, labels, check, findings, unknowns)
        except CascbenchError as exc:
            findings.items.append(Finding("error", day, str(exc)))
        check.findings = findings.items
        report.days.append(check)
    report.settled = unknowns.settled()
    return report


def _check_id_cnt(root: Path, report: CheckReport, unknowns: _Unknowns) -> IdCounts | None:
    try:
        id_counts = read_id_counts(root)
    except CascbenchError as exc:
        report.findings.append(Finding("error", ID_CNT_FILE, str(exc)))
        return None
    report.id_cnt = {
        "counts": id_counts.counts,
        "renamed_keys": id_counts.renamed,
        "unknown_keys": list(id_counts.unknown),
    }
    unknowns.containers.setdefault("id_cnt", set()).add(id_counts.container)
    missing = [f for f in ID_FIELDS if f not in id_counts.counts]
    if missing:
        report.findings.append(
            Finding("error", ID_CNT_FILE, f"no count for {', '.join(missing)}; ids unchecked.")
        )
        return None
    return id_counts


def _check_day(
    root: Path,
    day: str,
    id_counts: IdCounts | None,
    labels: set[str],
    check: DayCheck,
    findings: Findings,
    unknowns: _Unknowns,
) -> None:
    files = day_files(day)
    requests = read_request_mapping(root, files["request_id_dict"])
    sequences = read_request_mapping(root, files["seq_effective_50_dict"])
    unknowns.containers.setdefault("request_id_dict", set()).add(
        f"{requests.container} of {requests.inner_container}"
    )
    unknowns.containers.setdefault("seq_effective_50_dict", set()).add(sequences.container)
    stage_items = ("video_id", "author_id", "category_level_two", "category_level_one",
                   "upload_type")  # fmt: skip
    counts = id_counts.counts if id_counts else None

    def observe(batch: pa.RecordBatch) -> None:
        unknowns.observe(batch, files["all_stage"])
        if counts:
            values = np.stack([int_column(batch, c, files["all_stage"]) for c in stage_items], 1)
            request = int_column(batch, "request_id", files["all_stage"])
            check_ids(values, stage_items, counts, request, files["all_stage"], "items", findings)

    extra = tuple(dict.fromkeys((*STAGE_LABELS, *GRADED_INDEX.values(), *stage_items)))
    scan = scan_all_stage(root, files["all_stage"], GRADED_INDEX, observe, extra)
    local = local_day_names(np.floor_divide(scan.request_columns[:, 0], 1000))
    unknowns.local_day_match[0] += int((local == np.datetime64(day)).sum())
    unknowns.local_day_match[1] += len(local)

    keep, _ = match_requests(requests.keys, scan, sequences.keys, files, findings)
    keys = requests.keys[keep]
    values = [v for v, k in zip(requests.values, keep, strict=True) if k]
    check.requests = len(keys)
    if counts:
        request_context(keys, scan, counts, files["all_stage"], findings)
    slots = _slots_per_label()
    for label in STAGE_LABELS:
        rows, lengths, raw = gather_group(values, keys, label, _ALL_ROWS, files["request_id_dict"])
        request_row = np.repeat(np.arange(len(keys)), lengths)
        check.groups[label] = group_stats(raw, slots[label])
        if counts:
            check_ids(rows[:, DICT_ITEM_COLUMNS], ITEM_FIELDS, counts, keys[request_row],
                      files["request_id_dict"], f"group {label!r}", findings)  # fmt: skip
        if label in GRADED_INDEX:
            first = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            in_slots = first < slots[label]
            position = lookup_positions(keys, request_row[in_slots], rows[in_slots, 0],
                                        scan.graded[label])  # fmt: skip
            missing = int((~(np.isfinite(position) & (position > 0))).sum())
            check.without_position[label] = missing
            if missing:
                findings.warning(
                    files["all_stage"],
                    f"{missing} {label} items of request_id_dict have no {GRADED_INDEX[label]} "
                    f"(no flagged row, or an empty value); training counts them as 0.",
                )
        stats = check.groups[label]
        absent = stats["absent"] if label in REQUIRED_LABELS else 0
        if label in labels and (absent or stats["short"]):
            findings.warning(
                files["request_id_dict"],
                f"group {label!r} is absent in {absent} and shorter than {slots[label]} in "
                f"{stats['short']} of {len(keys)} requests (padded).",
            )
    positions = np.searchsorted(sequences.keys, keys)
    unknowns.sequence_shapes.update({np.shape(sequences.values[i]) for i in positions[:1000]})
    if counts:
        read_sequences(sequences, positions, keys, SEQUENCE_LENGTH, counts,
                       files["seq_effective_50_dict"], findings)  # fmt: skip
