"""A synthetic world written as a prepared cache, one day at a time (issue 16).

`generate_world` holds a whole world in memory, which a RecFlow-scale world (6M requests) does
not fit on an ordinary machine. `write_world_cache` draws it with `generate_days` and writes each
day as soon as it is drawn, in the cache format `cascbench data prepare recflow` writes (days
named from RecFlow's first day, 2024-01-13, so that 23 days are the paper's days), so memory holds
the world's entities, one day and one chunk of a day's work whatever the number of days, and runs open it as they open a
RecFlow cache: memory-mapped, one day at a time. The true utility is not kept (a cache has no
such array, as RecFlow has none). An interrupted write resumes: days already written by the same
world are kept.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path

from cascbench.data import FeatureSchema
from cascbench.datasets.cache import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    DayCallback,
    _groups_json,
    _start_manifest,
    _write_day,
)
from cascbench.datasets.recflow_reader import DayArrays
from cascbench.datasets.recflow_schema import FIRST_DAY
from cascbench.datasets.synthetic.config import WorldConfig
from cascbench.datasets.synthetic.world import DAY_CHUNK_REQUESTS, _schema, generate_days
from cascbench.io import atomic_write_json
from cascbench.settings import Setting


@dataclass
class WorldCacheSummary:
    out: Path
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0


def world_day_names(config: WorldConfig) -> tuple[str, ...]:
    """The dates the world's days are written under: RecFlow's first day onwards."""
    first = datetime.date.fromisoformat(FIRST_DAY)
    return tuple((first + datetime.timedelta(days=d)).isoformat() for d in range(config.days))


def write_world_cache(
    setting: Setting,
    config: WorldConfig,
    out: Path | str,
    *,
    seed: int = 0,
    world_name: str = "",
    force: bool = False,
    vocabulary: dict[str, int] | None = None,
    on_day: DayCallback | None = None,
) -> WorldCacheSummary:
    """Draw the world (setting, config, seed) day by day into the cache folder `out`.

    vocabulary: field -> a vocabulary size (padding id included) that the cache's schema gives
    at least, so that the stage models' id tables have that size whatever the world draws (the
    benchmark suite gives RecFlow's: about 9M videos); every id stays valid.

    on_day(day, status) is called with "writing" before a day is drawn, then "written" or
    "kept". A folder holding another cache is an error unless `force` (which rebuilds it).
    """
    started = time.perf_counter()
    out = Path(out)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "setting": setting.name,
        "groups": _groups_json(setting),
        "sequence_length": config.sequence_length,
        # How the days were drawn is part of the world: a cache of another chunking is another
        # cache, never resumed into.
        "world": {
            "name": world_name,
            "seed": seed,
            "config": config.model_dump(mode="json"),
            "day_chunk_requests": DAY_CHUNK_REQUESTS,
        },
        "schema": _schema_json(_schema(config), vocabulary or {}),
    }
    manifest = _start_manifest(out, header, force)
    names = world_day_names(config)
    summary = WorldCacheSummary(out)
    todo = [i for i, day in enumerate(names) if not (day in manifest["days"] and
                                                      (out / "days" / day).is_dir())]  # fmt: skip
    for index, day in enumerate(names):
        if index not in todo:
            summary.kept.append(day)
            summary.requests += manifest["days"][day]["requests"]
            if on_day is not None:
                on_day(day, "kept")
    if todo:
        days = range(todo[0], todo[-1] + 1)
        for part in generate_days(setting, config, seed, days):
            index = int(part.day[0])
            day = names[index]
            if index not in todo:  # written before an interruption: drawn again, not rewritten
                continue
            if on_day is not None:
                on_day(day, "writing")
            arrays = DayArrays(
                context=part.context.numpy(),
                sequence=part.sequence.numpy(),
                sequence_mask=part.sequence_mask.numpy(),
                candidates=part.candidates.numpy(),
                label=part.label.numpy(),
                mask=part.mask.numpy(),
                request_id=part.request_id.numpy(),
                stats={},
            )
            recorded = _write_day(out, day, arrays)
            manifest["days"][day] = {"requests": part.n_requests, "sources": [], "stats": {},
                                     "arrays": recorded}  # fmt: skip
            atomic_write_json(out / MANIFEST, manifest)
            summary.written.append(day)
            summary.requests += part.n_requests
            if on_day is not None:
                on_day(day, "written")
    summary.seconds = time.perf_counter() - started
    return summary


def _schema_json(schema: FeatureSchema, vocabulary: dict[str, int]) -> dict[str, list]:
    """The manifest's form of a schema, field lists of [name, vocabulary size], each size at least
    `vocabulary`'s for that field."""
    sections = ("context_fields", "item_fields", "candidate_fields")
    return {
        section: [[f, max(n, vocabulary.get(f, 0))] for f, n in getattr(schema, section)]
        for section in sections
    }
