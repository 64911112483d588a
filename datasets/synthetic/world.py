"""Assembly: a synthetic world for a setting, in the canonical arrays (`CascadeData`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch

from cascbench.data import (
    CANDIDATE_FIELDS,
    CONTEXT_FIELDS,
    ITEM_FIELDS,
    CascadeData,
    FeatureSchema,
    concat_data,
)
from cascbench.datasets.synthetic.config import WorldConfig
from cascbench.datasets.synthetic.entities import (
    _build_histories,
    _build_items,
    _build_users,
    _Items,
    _Requests,
    _sample_request_items,
    _sample_request_times,
    _sample_requests,
    _Users,
)
from cascbench.datasets.synthetic.funnel import _labels, _run_funnel, resolve_funnel
from cascbench.datasets.synthetic.utility import _utility
from cascbench.settings import Setting

# Day 0 is a Saturday, like RecFlow's first day (2024-01-13); weekday ids are 1 (Monday) .. 7.
_FIRST_WEEKDAY = 5


def _schema(config: WorldConfig) -> FeatureSchema:
    """Vocabulary sizes = the largest id + 1 (id 0 is padding)."""
    context = (7, 24, 60, config.n_users, config.n_devices, config.n_genders, config.n_ages,
               config.n_provinces)  # fmt: skip
    item = (config.n_items, config.n_authors, config.n_categories_level_two,
            config.n_categories_level_one, config.n_upload_types)  # fmt: skip
    candidate = (7, 24, 60)
    return FeatureSchema(
        context_fields=tuple((f, n + 1) for f, n in zip(CONTEXT_FIELDS, context, strict=True)),
        item_fields=tuple((f, n + 1) for f, n in zip(ITEM_FIELDS, item, strict=True)),
        candidate_fields=tuple(
            (f, n + 1) for f, n in zip(CANDIDATE_FIELDS, candidate, strict=True)
        ),
    )


def generate_world(setting: Setting, config: WorldConfig, seed: int = 0) -> CascadeData:
    """Generate a synthetic world for `setting`: days * requests_per_day requests, ordered by day.

    Arrays: context int32 [R, 8], sequence int32 [R, L, 5], sequence_mask bool [R, L], candidates
    int32 [R, N, 8], label float32 [R, N], group int64 [R, N], mask bool [R, N], day and request_id
    int64 [R], utility float32 [R, N] (0 on padding). The same (setting, config, seed) gives the
    same bytes. Raises CascbenchError when the config does not fit the setting.
    """
    return _generate(setting, config, seed, with_signals=False)[0]


def generate_world_with_signals(
    setting: Setting, config: WorldConfig, seed: int = 0
) -> tuple[CascadeData, dict[str, torch.Tensor]]:
    """The world of `generate_world` and what its candidates' scores are made of, for ceilings.

    Signals, float32 [R, N] (0 on padding): "visible", the noise-free part of the utility that the
    features determine (everything a stage model can learn); "logged", the visible signal plus the
    hidden effect (what the logged funnel scored, before each stage's own noise); "utility", the
    true utility (the data's `utility`).
    """
    data, signals = _generate(setting, config, seed, with_signals=True)
    assert signals is not None
    return data, signals


#: A day of `generate_days` is drawn in chunks of at most this many requests, so that the
#: intermediate tensors of a RecFlow-scale day (pools, utilities, the funnel: about 3 GB for
#: 260,870 requests) stay bounded. Part of the world's definition: a world cache records it.
DAY_CHUNK_REQUESTS = 65_536


def generate_days(
    setting: Setting, config: WorldConfig, seed: int = 0, days: range | None = None
) -> Iterator[CascadeData]:
    """The world one day at a time, for worlds too large to hold at once (RecFlow scale).

    The items, users and histories are built once from `seed`. Each day's requests (who asks,
    when) are drawn from a generator of their own, seeded from (seed, day), and ordered by time;
    their sequences, pools, utilities and funnel are then drawn in chunks of DAY_CHUNK_REQUESTS
    consecutive requests, the first from the same generator, each later one from a generator
    seeded from (seed, day, chunk). Memory holds the entities, one day and one chunk's work, and
    a day's bytes do not depend on the others. It is therefore another world than
    `generate_world`'s for the same seed (which draws every day from one generator). Yields
    CascadeData, one per day in order, with absolute day indices and request ids (day d's ids
    follow day d − 1's). The same (setting, config, seed) gives the same bytes.
    days: the days to yield (default: all); the others are not drawn at all.
    """
    keep, noise = resolve_funnel(setting, config)
    g = torch.Generator().manual_seed(seed)
    items, users, history = _build_entities(config, g)
    for day in range(config.days) if days is None else days:
        day_seed = _day_seed(seed, day)
        day_g = torch.Generator().manual_seed(day_seed)
        times = _sample_request_times(config, users, day_g, range(day, day + 1))
        chunks = []
        for chunk, start in enumerate(range(0, config.requests_per_day, DAY_CHUNK_REQUESTS)):
            chunk_seed = day_seed if chunk == 0 else _day_seed(seed, day, chunk)
            chunk_g = day_g if chunk == 0 else torch.Generator().manual_seed(chunk_seed)
            rows = slice(start, start + DAY_CHUNK_REQUESTS)
            requests = _sample_request_items(config, users, items, history, chunk_g,
                                             *(t[rows] for t in times))  # fmt: skip
            first_id = day * config.requests_per_day + start
            chunks.append(_assemble(setting, config, items, users, requests, keep, noise,
                                    chunk_g, chunk_seed, first_id, with_signals=False)[0])  # fmt: skip
        yield chunks[0] if len(chunks) == 1 else concat_data(chunks)


def _day_seed(seed: int, day: int, chunk: int = 0) -> int:
    """The seed of a day's generator (chunk 0) or of one of its later chunks."""
    text = f"cascbench world day {seed} {day}" + (f" chunk {chunk}" if chunk else "")
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _build_entities(config: WorldConfig, g: torch.Generator) -> tuple[_Items, _Users, torch.Tensor]:
    items = _build_items(config, g)
    users = _build_users(config, items, g)
    return items, users, _build_histories(config, users, items, g)


def _generate(
    setting: Setting, config: WorldConfig, seed: int, with_signals: bool
) -> tuple[CascadeData, dict[str, torch.Tensor] | None]:
    keep, noise = resolve_funnel(setting, config)
    g = torch.Generator().manual_seed(seed)
    items, users, history = _build_entities(config, g)
    requests = _sample_requests(config, users, items, history, g)
    return _assemble(setting, config, items, users, requests, keep, noise, g, seed, 0, with_signals)


def _assemble(
    setting: Setting,
    config: WorldConfig,
    items: _Items,
    users: _Users,
    requests: _Requests,
    keep: tuple[int, ...],
    noise: tuple[float, ...],
    g: torch.Generator,
    seed: int,
    first_id: int,
    with_signals: bool,
) -> tuple[CascadeData, dict[str, torch.Tensor] | None]:
    """The requests' utilities and logged funnel, laid out in the canonical arrays (request ids
    from first_id); the signals too when asked."""
    utility = _utility(config, users, items, requests, g, seed)
    slot, rank = _run_funnel(setting, config, utility, keep, noise, g)

    mask = slot >= 0
    position = slot.clamp_min(0)

    def at_candidates(value: torch.Tensor) -> torch.Tensor:
        return value.gather(1, position).masked_fill(~mask, 0.0).float()

    item = requests.pool.gather(1, position)
    candidates = items.ids[item].masked_fill(~mask[:, :, None], 0)
    true_utility = at_candidates(utility.total(config))
    sequence = items.ids[requests.sequence.clamp_min(0), :5]
    sequence = sequence.masked_fill(~requests.sequence_mask[:, :, None], 0)
    weekday = (requests.day + _FIRST_WEEKDAY) % 7
    context = torch.cat(
        [torch.stack([weekday, requests.hour, requests.minute], 1) + 1, users.ids[requests.user]],
        dim=1,
    )
    r = slot.shape[0]
    data = CascadeData(
        setting_name=setting.name,
        schema=_schema(config),
        context=context.to(torch.int32),
        sequence=sequence.to(torch.int32),
        sequence_mask=requests.sequence_mask,
        candidates=candidates.to(torch.int32),
        label=_labels(setting, rank),
        group=setting.slot_group.expand(r, -1).clone(),
        mask=mask,
        day=requests.day,
        request_id=torch.arange(first_id, first_id + r),
        utility=true_utility,
    )
    if not with_signals:
        return data, None
    signals = {
        "visible": at_candidates(utility.signal(config)),
        "logged": at_candidates(utility.logged(config)),
        "utility": true_utility,
    }
    return data, signals
