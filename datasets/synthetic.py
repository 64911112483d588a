"""Synthetic worlds: users, items, requests and a logged funnel, with known utility (SPEC §7).

A world produces the same canonical arrays as RecFlow (`CascadeData`), so every stage model and
method runs on it unchanged, and adds the true utility of every candidate for oracle metrics.

How a world is built (all vectorised in torch on CPU, from one seeded generator, so that the same
(setting, config, seed) gives the same bytes):

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
4. True utility = dot_weight * <user, item> (what a two-tower model represents)
   + interaction_weight * max cosine similarity between the candidate and the sequence items (what
   target attention captures), compared on their niches (latent minus the level-one centre: the
   level-two and item-level taste that the user vector, built from level-one interests, does not
   hold) + quality_weight * item quality + noise_std * noise. The three signal parts are
   standardised (global mean, pooled within-request std), so the weights are the parts' shares of
   the within-request variation that ranking cares about.
5. A production funnel of G - 1 logged stages (G = number of groups) ranks the pool with noisy
   scorers of the signal (earlier stages noisier; the earliest see only the two-tower part) and logs
   the groups exactly like RecFlow: the last stage's survivors are the graded ground truth in rank
   order, and each other group is a random sample of the items one stage filtered out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cascbench.data import CascadeData, FeatureSchema
from cascbench.errors import CascbenchError, unknown_name_error
from cascbench.settings import Setting

# Relative request activity per hour of day (0..23): low at night, peaks in the evening.
_HOURLY_ACTIVITY = (
    3.0, 2.0, 1.5, 1.0, 1.0, 1.5, 3.0, 5.0, 6.0, 6.0, 6.0, 7.0,
    8.0, 7.0, 6.0, 6.0, 6.0, 7.0, 8.0, 9.0, 10.0, 10.0, 8.0, 5.0,
)  # fmt: skip
# Day 0 is a Saturday, like RecFlow's first day (2024-01-13); weekday ids are 1 (Monday) .. 7.
_FIRST_WEEKDAY = 5
# Std of the quality offset of each upload type (so that the upload type carries a little signal).
_UPLOAD_TYPE_QUALITY_STD = 0.3
# Draws per requested slot before removing duplicates from pools and history pools.
_OVERSAMPLE = 1.5
# Requests per chunk of the [chunk, pool, L] similarity computation (bounds memory, stays in cache).
_CHUNK = 1024
# Share of a user's history drawn from their interests (the rest: popular items anywhere).
_HISTORY_INTEREST_SHARE = 0.75
# Popularity tickets per item on average: weighted draws become one uniform index into the tickets.
_TICKETS_PER_ITEM = 8
# Added to the similarity of padded sequence rows so that the max never picks them.
_PADDING_SIMILARITY = -10.0

CONTEXT_FIELDS = ("weekday", "hour", "minute", "user_id", "device_id", "gender", "age", "province")
ITEM_FIELDS = ("video_id", "author_id", "category_level_two", "category_level_one", "upload_type")
CANDIDATE_FIELDS = ("upload_weekday", "upload_hour", "upload_minute")

NonNegativeFloat = Annotated[float, Field(ge=0.0)]
PositiveInt = Annotated[int, Field(ge=1)]


class WorldConfig(BaseModel):
    """Every knob of a synthetic world. Sizes are counts of real entities (ids run 1..count)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Requests.
    days: int = Field(4, ge=1, description="Number of days; the last one is the test day.")
    requests_per_day: int = Field(9_000, ge=1, description="Requests generated per day.")
    user_popularity_exponent: float = Field(
        0.8,
        ge=0.0,
        description="Zipf exponent of how often each user sends a request (0: uniform).",
    )
    # Vocabularies.
    n_users: int = Field(4_000, ge=1, description="Number of users.")
    n_items: int = Field(20_000, ge=1, description="Number of items (videos).")
    n_authors: int = Field(2_000, ge=1, description="Number of authors (>= level-one categories).")
    n_categories_level_one: int = Field(20, ge=1, description="Number of level-one categories.")
    n_categories_level_two: int = Field(
        200, ge=1, description="Number of level-two categories, each nested in one level-one."
    )
    n_upload_types: int = Field(6, ge=1, description="Number of upload types.")
    n_provinces: int = Field(30, ge=1, description="Number of provinces.")
    n_devices: int = Field(500, ge=1, description="Number of device ids, shared between users.")
    n_genders: int = Field(3, ge=1, description="Number of gender values.")
    n_ages: int = Field(8, ge=1, description="Number of age buckets.")
    # Latent structure.
    latent_dim: int = Field(16, ge=1, description="Dimension of user and item latent vectors.")
    category_spread: float = Field(
        0.6,
        ge=0.0,
        description="Std of a level-two centre around its level-one centre (per unit norm).",
    )
    item_spread: float = Field(
        0.5,
        ge=0.0,
        description="Std of an item latent around its level-two centre (per unit norm).",
    )
    user_spread: float = Field(
        0.5, ge=0.0, description="Std of a user's own latent noise around their interests."
    )
    demographic_shift: float = Field(
        0.3, ge=0.0, description="Std of the latent shift of each gender and each age bucket."
    )
    second_interest_prob: float = Field(
        0.5, ge=0.0, le=1.0, description="Probability that a user has two level-one interests."
    )
    author_quality_share: float = Field(
        0.5, ge=0.0, le=1.0, description="Share of an item's quality variance that its author sets."
    )
    item_popularity_exponent: float = Field(
        0.6,
        ge=0.0,
        description="Zipf exponent of item popularity when pools are drawn (0: uniform).",
    )
    # Behaviour sequences.
    sequence_length: int = Field(
        20, ge=1, description="L, behaviour sequence length (RecFlow: 50)."
    )
    min_sequence_length: int = Field(
        5, ge=0, description="Fewest real sequence entries of a request (<= sequence_length)."
    )
    history_size: int = Field(
        40, ge=1, description="Items in each user's history pool (>= sequence_length)."
    )
    history_temperature: float = Field(
        1.0, gt=0.0, description="Temperature of the affinity-weighted draw of history pools."
    )
    # Candidate pool and the logged funnel.
    pool_size: int = Field(
        120, ge=2, description="Candidate pool per request that the simulated funnel filters."
    )
    pool_interest_share: float = Field(
        0.5, ge=0.0, le=1.0, description="Share of the pool drawn from the user's interests."
    )
    funnel_keep: tuple[PositiveInt, ...] | None = Field(
        None,
        description="Survivors of each logged stage, earliest first, strictly decreasing, the last "
        "= the ground-truth group size; None: geometric from pool_size, each stage filtering at "
        "least the size of the group it logs.",
    )
    funnel_noise: tuple[NonNegativeFloat, ...] | None = Field(
        None,
        description="Noise std of each logged stage's scorer, earliest first; None: linear from "
        "funnel_noise_earliest to funnel_noise_last.",
    )
    funnel_noise_earliest: float = Field(
        2.0,
        ge=0.0,
        description="Default noise std of the earliest logged stage's scorer. 2.0 makes the "
        "retrieval stage's task non-trivial (independent BCE: Recall@10@30 about 0.94 on small, "
        "as in RecFlow's 0.97); with 1.0 every method reached 1.0 there.",
    )
    funnel_noise_last: float = Field(
        0.5, ge=0.0, description="Default noise std of the last logged stage's scorer."
    )
    two_tower_logged_stages: int = Field(
        1,
        ge=0,
        description="The earliest logged stages that see only the two-tower part of the signal "
        "(dot and quality); capped so that the last logged stage sees all of it.",
    )
    missing_group_prob: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Probability that an optional group (index >= 2) is absent in a request.",
    )
    # Utility mix.
    dot_weight: float = Field(1.0, ge=0.0, description="Weight of the user-item dot product.")
    interaction_weight: float = Field(
        1.0, ge=0.0, description="Weight of the candidate-to-sequence interaction."
    )
    quality_weight: float = Field(0.5, ge=0.0, description="Weight of the item quality.")
    noise_std: float = Field(
        0.5, ge=0.0, description="Std of the utility noise that no scorer (logged or trained) sees."
    )

    @model_validator(mode="after")
    def _check_sizes(self) -> WorldConfig:
        checks = [
            (
                self.n_categories_level_two >= self.n_categories_level_one,
                "n_categories_level_two must be >= n_categories_level_one",
            ),
            (
                self.n_authors >= self.n_categories_level_one,
                "n_authors must be >= n_categories_level_one (every category has an author)",
            ),
            (
                self.n_items >= self.n_categories_level_two,
                "n_items must be >= n_categories_level_two (every category has an item)",
            ),
            (
                self.min_sequence_length <= self.sequence_length,
                "min_sequence_length must be <= sequence_length",
            ),
            (
                self.history_size >= self.sequence_length,
                "history_size must be >= sequence_length",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise CascbenchError(f"WorldConfig: {message}.")
        return self


WORLD_PRESETS: dict[str, WorldConfig] = {
    "tiny": WorldConfig(
        days=3,
        requests_per_day=200,
        n_users=50,
        n_items=1_000,
        n_authors=100,
        n_categories_level_one=5,
        n_categories_level_two=20,
        n_upload_types=3,
        n_provinces=5,
        n_devices=20,
        n_ages=4,
        latent_dim=8,
        sequence_length=10,
        min_sequence_length=2,
        history_size=20,
        pool_size=100,
    ),
    "small": WorldConfig(),  # the defaults
    # Calibrated on independent BCE only (docs/worlds.md): joint recall, ranking and retrieval
    # recall in the ranges of the paper's BCE row on RecFlow, sized for a 2-core CPU.
    "recflow-like": WorldConfig(
        days=5,
        requests_per_day=5_000,
        funnel_noise_earliest=1.0,
        funnel_noise_last=0.1,
        interaction_weight=0.6,
    ),
}


def get_world_config(name: str) -> WorldConfig:
    """A world preset by name ("tiny", "small"); unknown names list the valid ones."""
    if name not in WORLD_PRESETS:
        raise unknown_name_error("world preset", name, WORLD_PRESETS)
    return WORLD_PRESETS[name]


# --------------------------------------------------------------------------------------------------
# Funnel shape: resolved against the setting.


def resolve_funnel(
    setting: Setting, config: WorldConfig
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The survivors and scorer noise of each logged stage (earliest first) for this setting.

    Raises CascbenchError, naming the field, when the config does not fit the setting.
    """
    groups = setting.groups
    n_logged = len(groups) - 1
    where = f"world config for setting {setting.name!r}"
    if n_logged < 1:
        raise CascbenchError(
            f"{where}: a synthetic world needs at least two groups (ground truth and losers); "
            f"the setting has {len(groups)}."
        )
    gt_size = groups[0].size
    if config.pool_size <= gt_size:
        raise CascbenchError(
            f"{where}: pool_size={config.pool_size} must exceed the ground-truth group size "
            f"{gt_size}; a pool of at least N={setting.n_candidates} fills every group."
        )
    keep = _default_keep(setting, config) if config.funnel_keep is None else config.funnel_keep
    if len(keep) != n_logged:
        raise CascbenchError(
            f"{where}: funnel_keep has {len(keep)} counts; it needs {n_logged} (one per logged "
            f"stage, earliest first: the setting has {len(groups)} groups)."
        )
    if any(b >= a for a, b in zip((config.pool_size, *keep), keep, strict=False)):
        raise CascbenchError(
            f"{where}: funnel_keep={tuple(keep)} must strictly decrease and start below "
            f"pool_size={config.pool_size}."
        )
    if keep[-1] != gt_size:
        raise CascbenchError(
            f"{where}: funnel_keep ends with {keep[-1]}; the last logged stage must keep the "
            f"ground-truth group size {gt_size} ({groups[0].name!r})."
        )
    if config.funnel_noise is None:
        noise = _default_noise(config, n_logged)
    elif len(config.funnel_noise) != n_logged:
        raise CascbenchError(
            f"{where}: funnel_noise has {len(config.funnel_noise)} values; it needs {n_logged} "
            "(one per logged stage, earliest first)."
        )
    else:
        noise = tuple(config.funnel_noise)
    return tuple(keep), noise


def _default_keep(setting: Setting, config: WorldConfig) -> tuple[int, ...]:
    """Geometric keeps from the pool to the ground truth, each stage filtering >= its group size."""
    sizes = [g.size for g in setting.groups]
    n_logged = len(sizes) - 1
    pool, gt = config.pool_size, sizes[0]
    ratio = (gt / pool) ** (1.0 / n_logged)
    keep = [round(pool * ratio ** (j + 1)) for j in range(n_logged)]
    keep[-1] = gt
    # Logged stage j's losers form group G - 1 - j; walk back from the last stage so that every
    # stage filters at least as many items as the group it logs holds.
    for j in range(n_logged - 2, -1, -1):
        keep[j] = max(keep[j], keep[j + 1] + sizes[n_logged - 1 - j])
    if config.pool_size - keep[0] < sizes[-1]:
        raise CascbenchError(
            f"world config for setting {setting.name!r}: pool_size={config.pool_size} is too "
            f"small for the default funnel_keep; use pool_size >= N={setting.n_candidates} or "
            "give funnel_keep explicitly."
        )
    return tuple(keep)


def _default_noise(config: WorldConfig, n_logged: int) -> tuple[float, ...]:
    if n_logged == 1:
        return (config.funnel_noise_last,)
    first, last = config.funnel_noise_earliest, config.funnel_noise_last
    return tuple(first + (last - first) * j / (n_logged - 1) for j in range(n_logged))


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
    config: WorldConfig, users: _Users, items: _Items, history: torch.Tensor, g: torch.Generator
) -> _Requests:
    r = config.days * config.requests_per_day
    user = torch.multinomial(users.weight, r, replacement=True, generator=g)
    day = torch.arange(config.days).repeat_interleave(config.requests_per_day)
    hour = torch.multinomial(torch.tensor(_HOURLY_ACTIVITY), r, replacement=True, generator=g)
    minute = _randint(60, (r,), g)
    # Requests ordered by day, then by time of day (stable, so ties keep their draw order).
    order = torch.sort(day * 1440 + hour * 60 + minute, stable=True).indices
    user, hour, minute = user[order], hour[order], minute[order]

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


# --------------------------------------------------------------------------------------------------
# Utility.


@dataclass(frozen=True)
class _Utility:
    """Standardised signal parts, float32 [R, P]: dot, interaction, quality; and noise [R, P]."""

    dot: torch.Tensor
    interaction: torch.Tensor
    quality: torch.Tensor
    noise: torch.Tensor

    def signal(self, config: WorldConfig, with_interaction: bool = True) -> torch.Tensor:
        """float32 [R, P]: the predictable part of the utility (optionally without interaction)."""
        value = config.dot_weight * self.dot + config.quality_weight * self.quality
        if with_interaction:
            value = value + config.interaction_weight * self.interaction
        return value

    def total(self, config: WorldConfig) -> torch.Tensor:
        """float32 [R, P]: the true utility."""
        return self.signal(config) + config.noise_std * self.noise


def _raw_parts(
    users: _Users, items: _Items, requests: _Requests
) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw dot product and interaction, float32 [R, P], computed chunk by chunk.

    interaction = max over the real sequence rows of cos(candidate niche, sequence item niche); 0 for
    a request with an empty sequence.
    """
    r, d = requests.pool.shape[0], items.latent.shape[1]
    # One gather per chunk: [latent | niche | 1]; the trailing 1 meets a sequence row's
    # padding offset, so one bmm gives cos + offset and no [B, P, L] masking pass is needed.
    table = torch.cat([items.latent, items.niche, torch.ones(len(items.niche), 1)], dim=1)
    dot = torch.empty(requests.pool.shape)
    interaction = torch.empty(requests.pool.shape)
    for start in range(0, r, _CHUNK):
        rows = slice(start, min(start + _CHUNK, r))
        cand = table[requests.pool[rows]]  # [B, P, 2d + 1]
        user = users.latent[requests.user[rows]]  # [B, d]
        dot[rows] = torch.bmm(cand[:, :, :d], user[:, :, None]).squeeze(2)
        mask = requests.sequence_mask[rows]  # [B, L]
        seq = items.niche[requests.sequence[rows].clamp_min(0)]  # [B, L, d]
        offset = torch.where(mask, 0.0, _PADDING_SIMILARITY)[:, :, None]
        seq = torch.cat([seq, offset], dim=2)  # [B, L, d + 1]
        sim = torch.bmm(cand[:, :, d:], seq.transpose(1, 2)).amax(dim=2)  # [B, P]
        interaction[rows] = torch.where(mask.any(1, keepdim=True), sim, 0.0)
    return dot, interaction


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """x [R, P] minus its global mean, divided by its pooled within-request std."""
    centred = x - x.mean(dim=1, keepdim=True)
    within = math.sqrt(_total(centred.pow(2)) / x.numel())
    return (x - _total(x) / x.numel()) / max(within, 1e-8)


def _total(x: torch.Tensor) -> float:
    """The sum of x [R, P] in a fixed order (rows, then a sequential float64 cumsum over them).

    A plain sum splits the work by thread count, which would change the bytes of the world with the
    number of threads.
    """
    return torch.cumsum(x.double().sum(dim=1), dim=0)[-1].item()


def _utility(users: _Users, items: _Items, requests: _Requests, g: torch.Generator) -> _Utility:
    dot, interaction = _raw_parts(users, items, requests)
    quality = items.quality[requests.pool]
    noise = torch.randn(requests.pool.shape, generator=g)
    return _Utility(_standardise(dot), _standardise(interaction), _standardise(quality), noise)


# --------------------------------------------------------------------------------------------------
# The logged funnel.


def _run_funnel(
    setting: Setting,
    config: WorldConfig,
    utility: _Utility,
    keep: tuple[int, ...],
    noise: tuple[float, ...],
    g: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulate the logged stages and lay the groups out (SPEC §1).

    Returns slot int64 [R, N], the pool position of each slot's item (-1 on padding), and
    rank int64 [R, N], the logged rank (1..size) of ground-truth items (0 elsewhere).
    """
    r, p = utility.dot.shape
    n_logged = len(keep)
    two_tower = min(config.two_tower_logged_stages, n_logged - 1)
    survivors = torch.arange(p).expand(r, p)
    losers: list[torch.Tensor] = []  # losers[j]: pool positions filtered by logged stage j
    for j in range(n_logged):
        score = utility.signal(config, with_interaction=j >= two_tower)
        score = score + noise[j] * torch.randn(score.shape, generator=g)
        ranked = _rank(survivors, score.gather(1, survivors))
        survivors, filtered = ranked[:, : keep[j]], ranked[:, keep[j] :]
        losers.append(filtered)

    blocks = [survivors]  # the ground truth, in the last logged stage's rank order
    for index in range(1, len(setting.groups)):
        group = setting.groups[index]
        block = _sample_group(losers[n_logged - index], group.size, g)
        if index >= 2 and config.missing_group_prob > 0:
            absent = torch.rand(r, 1, generator=g) < config.missing_group_prob
            block = block.masked_fill(absent, -1)
        blocks.append(block)
    slot = torch.cat(blocks, dim=1)
    rank = torch.zeros_like(slot)
    rank[:, : survivors.shape[1]] = torch.arange(1, survivors.shape[1] + 1)
    return slot, rank


def _rank(positions: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """positions int64 [R, M] sorted by score float [R, M], descending (stable for ties)."""
    order = torch.sort(score, dim=1, descending=True, stable=True).indices
    return positions.gather(1, order)


def _sample_group(losers: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """int64 [R, size]: a uniform random sample of the losers [R, M], padded with -1 if M < size."""
    r, m = losers.shape
    take = min(size, m)
    pick = torch.argsort(torch.rand(losers.shape, generator=g), dim=1)[:, :take]
    block = losers.gather(1, pick)
    if take < size:
        block = torch.cat([block, torch.full((r, size - take), -1)], dim=1)
    return block


# --------------------------------------------------------------------------------------------------
# Assembly.


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


def _labels(setting: Setting, rank: torch.Tensor) -> torch.Tensor:
    """float32 [R, N]: the group's label, minus the rank index in a graded group.

    rank int64 [R, N] is 0 on padding, so a padded slot keeps its group's label (SPEC §2).
    """
    base = torch.tensor([g.label for g in setting.groups], dtype=torch.float32)[setting.slot_group]
    graded = torch.tensor([g.graded for g in setting.groups])[setting.slot_group]
    return base - torch.where(graded, rank.float(), torch.zeros(()))


def generate_world(setting: Setting, config: WorldConfig, seed: int = 0) -> CascadeData:
    """Generate a synthetic world for `setting`: days * requests_per_day requests, ordered by day.

    Arrays: context int32 [R, 8], sequence int32 [R, L, 5], sequence_mask bool [R, L], candidates
    int32 [R, N, 8], label float32 [R, N], group int64 [R, N], mask bool [R, N], day and request_id
    int64 [R], utility float32 [R, N] (0 on padding). The same (setting, config, seed) gives the
    same bytes. Raises CascbenchError when the config does not fit the setting.
    """
    keep, noise = resolve_funnel(setting, config)
    g = torch.Generator().manual_seed(seed)
    items = _build_items(config, g)
    users = _build_users(config, items, g)
    history = _build_histories(config, users, items, g)
    requests = _sample_requests(config, users, items, history, g)
    utility = _utility(users, items, requests, g)
    slot, rank = _run_funnel(setting, config, utility, keep, noise, g)

    mask = slot >= 0
    position = slot.clamp_min(0)
    item = requests.pool.gather(1, position)
    candidates = items.ids[item].masked_fill(~mask[:, :, None], 0)
    true_utility = utility.total(config).gather(1, position).masked_fill(~mask, 0.0)
    sequence = items.ids[requests.sequence.clamp_min(0), :5]
    sequence = sequence.masked_fill(~requests.sequence_mask[:, :, None], 0)
    weekday = (requests.day + _FIRST_WEEKDAY) % 7
    context = torch.cat(
        [torch.stack([weekday, requests.hour, requests.minute], 1) + 1, users.ids[requests.user]],
        dim=1,
    )
    r = slot.shape[0]
    return CascadeData(
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
        request_id=torch.arange(r),
        utility=true_utility.float(),
    )
