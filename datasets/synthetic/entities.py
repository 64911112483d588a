"""The entities of a synthetic world: items, users with their history pools, and requests.

1. Items: level-one categories have latent centres; each level-two category (nested in one
   level-one category) has a centre near its parent's; an item's latent is its level-two centre
   plus noise. An item has an author (authors live in one level-one category and have a quality),
   an upload type, an upload time, a popularity weight and a scalar quality (author quality + own
   quality + upload-type offset).
2. Users: one or two level-one interests; the latent mixes those centres, shifted by gender and age.
   Each user has a device id and a province, and a history pool: items they liked, drawn from their
   interests and the popular items, favouring high affinity.
3. Requests: a popularity-skewed user, a day, an hour and minute; the behaviour sequence is a random
   subset of the user's history pool of random length, real rows at the bottom (RecFlow's layout).
   A candidate pool per request mixes items of the user's interests and popular items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cascbench.datasets.synthetic.config import WorldConfig

# Relative request activity per hour of day (0..23): low at night, peaks in the evening.
_HOURLY_ACTIVITY = (
    3.0, 2.0, 1.5, 1.0, 1.0, 1.5, 3.0, 5.0, 6.0, 6.0, 6.0, 7.0,
    8.0, 7.0, 6.0, 6.0, 6.0, 7.0, 8.0, 9.0, 10.0, 10.0, 8.0, 5.0,
)  # fmt: skip
# Std of the quality offset of each upload type (so that the upload type carries a little signal).
_UPLOAD_TYPE_QUALITY_STD = 0.3
# Draws per requested slot before removing duplicates from pools and history pools.
_OVERSAMPLE = 1.5
# Share of a user's history drawn from their interests (the rest: popular items anywhere).
_HISTORY_INTEREST_SHARE = 0.75
# Popularity tickets per item on average: weighted draws become one uniform index into the tickets.
_TICKETS_PER_ITEM = 8

# --------------------------------------------------------------------------------------------------
# Users and items.


@dataclass(frozen=True)
class _Items:
    """Item attributes; items are sorted by level-two (hence level-one) category.

    latent float32 [I, d]; niche float32 [I, d]: the unit direction of latent minus the level-one
    centre, which the interaction compares; quality float32 [I];
    ids int64 [I, 8]: video, author, category two, category one, upload type, upload weekday,
    hour, minute (all >= 1); cat1 int64 [I] (0-based); centre1 float32 [C1, d]: the level-one
    category centres; cat1_size int64 [C1]: items per level-one category.
    tickets int64 [T]: item indices, each repeated in proportion to its popularity (at least once),
    in item order, so each level-one category owns the contiguous range ticket_start..ticket_end.
    """

    latent: torch.Tensor
    niche: torch.Tensor
    quality: torch.Tensor
    ids: torch.Tensor
    cat1: torch.Tensor
    centre1: torch.Tensor
    cat1_size: torch.Tensor
    tickets: torch.Tensor
    ticket_start: torch.Tensor
    ticket_end: torch.Tensor


@dataclass(frozen=True)
class _Users:
    """latent float32 [U, d]; interests int64 [U, 2] (0-based level-one, twice if only one);
    ids int64 [U, 5]: user, device, gender, age, province (>= 1); weight float64 [U] (activity)."""

    latent: torch.Tensor
    interests: torch.Tensor
    ids: torch.Tensor
    weight: torch.Tensor


def _randn(shape: tuple[int, ...], g: torch.Generator, std: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=g) * std


def _randint(high: int, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=g)


def _zipf_weights(n: int, exponent: float, g: torch.Generator) -> torch.Tensor:
    """float64 [n]: Zipf weights rank^-exponent assigned to entities in random order."""
    ranks = torch.randperm(n, generator=g).double() + 1.0
    return ranks.pow(-exponent)


def _unit(x: torch.Tensor) -> torch.Tensor:
    """x [M, d] scaled to unit rows."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)


def _blocks(n_members: int, n_blocks: int) -> torch.Tensor:
    """int64 [n_members]: contiguous, balanced block of each member (every block non-empty)."""
    return torch.arange(n_members) * n_blocks // n_members


def _build_items(config: WorldConfig, g: torch.Generator) -> _Items:
    d, n1, n2 = config.latent_dim, config.n_categories_level_one, config.n_categories_level_two
    scale = 1.0 / math.sqrt(d)  # components of std 1/sqrt(d) give vectors of norm about 1
    centre1 = _randn((n1, d), g, scale)
    parent = _blocks(n2, n1)  # level-two category -> level-one
    centre2 = centre1[parent] + _randn((n2, d), g, config.category_spread * scale)

    # One item per level-two category first, so none is empty; the rest by skewed category sizes.
    size_weight = _zipf_weights(n2, 0.8, g)
    extra = torch.multinomial(size_weight, config.n_items - n2, replacement=True, generator=g)
    cat2 = torch.sort(torch.cat([torch.arange(n2), extra])).values
    cat1 = parent[cat2]
    latent = centre2[cat2] + _randn((config.n_items, d), g, config.item_spread * scale)

    # Authors live in one level-one category; an item's author is uniform among them.
    author_cat = _blocks(config.n_authors, n1)
    author_start = torch.searchsorted(author_cat, torch.arange(n1))
    author_count = torch.bincount(author_cat, minlength=n1)
    author = (
        author_start[cat1] + (torch.rand(config.n_items, generator=g) * author_count[cat1]).long()
    )
    author = torch.minimum(author, author_start[cat1] + author_count[cat1] - 1)
    author_quality = _randn((config.n_authors,), g)

    type_weight = _zipf_weights(config.n_upload_types, 1.0, g)
    upload_type = torch.multinomial(type_weight, config.n_items, replacement=True, generator=g)
    type_offset = _randn((config.n_upload_types,), g, _UPLOAD_TYPE_QUALITY_STD)
    share = config.author_quality_share
    quality = (
        math.sqrt(share) * author_quality[author]
        + math.sqrt(1.0 - share) * _randn((config.n_items,), g)
        + type_offset[upload_type]
    )

    upload_time = torch.stack(
        [_randint(7, (config.n_items,), g), _randint(24, (config.n_items,), g),
         _randint(60, (config.n_items,), g)],
        dim=1,
    )  # fmt: skip
    ids = torch.cat(
        [torch.stack([torch.arange(config.n_items), author, cat2, cat1, upload_type], 1),
         upload_time],
        dim=1,
    ) + 1  # fmt: skip
    weight = _zipf_weights(config.n_items, config.item_popularity_exponent, g)
    n_tickets = (weight / weight.sum() * _TICKETS_PER_ITEM * config.n_items).round().long()
    tickets = torch.repeat_interleave(torch.arange(config.n_items), n_tickets.clamp_min(1))
    ticket_cat1 = cat1[tickets]
    return _Items(
        latent=latent,
        niche=_unit(latent - centre1[cat1]),
        quality=quality,
        ids=ids,
        cat1=cat1,
        centre1=centre1,
        cat1_size=torch.bincount(cat1, minlength=n1),
        tickets=tickets,
        ticket_start=torch.searchsorted(ticket_cat1, torch.arange(n1)),
        ticket_end=torch.searchsorted(ticket_cat1, torch.arange(n1), right=True),
    )


def _build_users(config: WorldConfig, items: _Items, g: torch.Generator) -> _Users:
    d, n_users = config.latent_dim, config.n_users
    scale = 1.0 / math.sqrt(d)
    # Interests follow the categories' sizes: big categories attract more users.
    interests = torch.multinomial(
        items.cat1_size.double(), 2 * n_users, replacement=True, generator=g
    )
    interests = interests.view(n_users, 2)
    single = torch.rand(n_users, generator=g) >= config.second_interest_prob
    interests[:, 1] = torch.where(single, interests[:, 0], interests[:, 1])
    mix = torch.rand(n_users, 1, generator=g) * 0.5 + 0.5  # the main interest dominates
    centre1 = items.centre1
    latent = mix * centre1[interests[:, 0]] + (1.0 - mix) * centre1[interests[:, 1]]

    gender = _randint(config.n_genders, (n_users,), g)
    age = _randint(config.n_ages, (n_users,), g)
    gender_shift = _randn((config.n_genders, d), g, config.demographic_shift * scale)
    age_shift = _randn((config.n_ages, d), g, config.demographic_shift * scale)
    latent = latent + gender_shift[gender] + age_shift[age]
    latent = latent + _randn((n_users, d), g, config.user_spread * scale)

    device = _randint(config.n_devices, (n_users,), g)
    province = _randint(config.n_provinces, (n_users,), g)
    ids = torch.stack([torch.arange(n_users), device, gender, age, province], 1) + 1
    weight = _zipf_weights(n_users, config.user_popularity_exponent, g)
    return _Users(latent=latent, interests=interests, ids=ids, weight=weight)


def _draw_items(
    items: _Items, interests: torch.Tensor, n_draws: int, interest_share: float, g: torch.Generator
) -> torch.Tensor:
    """int64 [R, n_draws]: popularity-weighted item draws, a share within each row's interests.

    interests int64 [R, 2]: the row's level-one interests, used alternately. A draw is a uniform
    ticket, from the category's ticket range when in-interest (O(1) per draw, no search).
    """
    rows = interests.shape[0]
    n_interest = round(n_draws * interest_share)
    cat = interests[:, torch.arange(n_interest) % 2]  # [R, n_interest]
    start = torch.cat(
        [items.ticket_start[cat], torch.zeros(rows, n_draws - n_interest, dtype=torch.long)], 1
    )
    end = torch.cat(
        [items.ticket_end[cat], torch.full((rows, n_draws - n_interest), len(items.tickets))], 1
    )
    u = torch.rand(rows, n_draws, generator=g, dtype=torch.float64)
    ticket = torch.minimum(start + (u * (end - start)).long(), end - 1)
    return items.tickets[ticket]


def _distinct_top(draws: torch.Tensor, keys: torch.Tensor, k: int) -> torch.Tensor:
    """int64 [R, k]: the k draws of highest key per row, duplicates of an item counted once.

    draws int64 [R, M], keys float [R, M], M >= k. A row with fewer than k distinct items keeps some
    duplicates (rare with the oversampling used).
    """
    order = torch.sort(draws, dim=1, stable=True)
    sorted_draws = order.values
    duplicate = torch.zeros_like(sorted_draws, dtype=torch.bool)
    duplicate[:, 1:] = sorted_draws[:, 1:] == sorted_draws[:, :-1]
    sorted_keys = keys.gather(1, order.indices).masked_fill(duplicate, -math.inf)
    top = torch.topk(sorted_keys, k, dim=1, sorted=True).indices
    return sorted_draws.gather(1, top)


def _build_histories(
    config: WorldConfig, users: _Users, items: _Items, g: torch.Generator
) -> torch.Tensor:
    """int64 [U, H]: each user's history pool, favouring items of high affinity (Gumbel top-H)."""
    # Twice the usual draws, so that the affinity-weighted choice has something to choose from.
    n_draws = math.ceil(config.history_size * _OVERSAMPLE * 2)
    draws = _draw_items(items, users.interests, n_draws, _HISTORY_INTEREST_SHARE, g)
    affinity = torch.einsum("ud,umd->um", users.latent, items.latent[draws])
    gumbel = -torch.log(-torch.log(torch.rand(draws.shape, generator=g).clamp_min(1e-12)))
    keys = affinity / config.history_temperature + gumbel
    return _distinct_top(draws, keys, config.history_size)


# --------------------------------------------------------------------------------------------------
# Requests.


@dataclass(frozen=True)
class _Requests:
    """user int64 [R] (0-based); day, hour (0..23), minute (0..59) int64 [R];
    sequence int64 [R, L] item indices (-1 = padding); sequence_mask bool [R, L];
    pool int64 [R, P] item indices."""

    user: torch.Tensor
    day: torch.Tensor
    hour: torch.Tensor
    minute: torch.Tensor
    sequence: torch.Tensor
    sequence_mask: torch.Tensor
    pool: torch.Tensor


def _sample_requests(
    config: WorldConfig,
    users: _Users,
    items: _Items,
    history: torch.Tensor,
    g: torch.Generator,
    days: range | None = None,
) -> _Requests:
    """The requests of `days` (default: every day of the world), ordered by day and time."""
    user, day, hour, minute = _sample_request_times(config, users, g, days)
    return _sample_request_items(config, users, items, history, g, user, day, hour, minute)


def _sample_request_times(
    config: WorldConfig, users: _Users, g: torch.Generator, days: range | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Who asks when: user, day, hour and minute int64 [R] of the requests of `days` (default:
    every day), ordered by day and time of day."""
    days = range(config.days) if days is None else days
    r = len(days) * config.requests_per_day
    user = torch.multinomial(users.weight, r, replacement=True, generator=g)
    day = torch.tensor(days).repeat_interleave(config.requests_per_day)
    hour = torch.multinomial(torch.tensor(_HOURLY_ACTIVITY), r, replacement=True, generator=g)
    minute = _randint(60, (r,), g)
    # Requests ordered by day, then by time of day (stable, so ties keep their draw order).
    order = torch.sort(day * 1440 + hour * 60 + minute, stable=True).indices
    return user[order], day, hour[order], minute[order]


def _sample_request_items(
    config: WorldConfig,
    users: _Users,
    items: _Items,
    history: torch.Tensor,
    g: torch.Generator,
    user: torch.Tensor,
    day: torch.Tensor,
    hour: torch.Tensor,
    minute: torch.Tensor,
) -> _Requests:
    """The requests of `_sample_request_times` with their behaviour sequences and pools."""
    sequence, sequence_mask = _sample_sequences(config, history[user], g)
    n_draws = math.ceil(config.pool_size * _OVERSAMPLE)
    draws = _draw_items(items, users.interests[user], n_draws, config.pool_interest_share, g)
    pool = _distinct_top(draws, torch.rand(draws.shape, generator=g), config.pool_size)
    return _Requests(user, day, hour, minute, sequence, sequence_mask, pool)


def _sample_sequences(
    config: WorldConfig, history: torch.Tensor, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random subset of each request's history pool (history int64 [R, H]).

    Returns item indices int64 [R, L] (-1 on padding) and the mask bool [R, L]: a request has a
    random number of real rows in [min_sequence_length, L], contiguous at the bottom.
    """
    r, length = history.shape[0], config.sequence_length
    pick = torch.argsort(torch.rand(history.shape, generator=g), dim=1)[:, :length]
    items = history.gather(1, pick)
    n_real = torch.randint(config.min_sequence_length, length + 1, (r, 1), generator=g)
    mask = torch.arange(length) >= length - n_real
    return items.masked_fill(~mask, -1), mask
