"""Synthetic worlds: determinism, canonical layout, feature ids, utility and config validation."""

from __future__ import annotations

import itertools

import pydantic
import pytest
import torch

from cascbench.data import CascadeData
from cascbench.datasets.synthetic import (
    WORLD_PRESETS,
    WorldConfig,
    generate_world,
    get_world_config,
    resolve_funnel,
)
from cascbench.errors import CascbenchError
from cascbench.settings import Group, Setting, Stage, get_setting

TINY = get_world_config("tiny")
ARRAYS = (
    "context", "sequence", "sequence_mask", "candidates", "label", "group", "mask", "day",
    "request_id", "utility",
)  # fmt: skip


def tiny(**changes: object) -> WorldConfig:
    """The tiny preset with some knobs changed (validated like any config)."""
    return WorldConfig(**{**TINY.model_dump(), **changes})


@pytest.fixture(scope="module")
def worlds() -> dict[str, CascadeData]:
    return {
        name: generate_world(get_setting(name), TINY, seed=0)
        for name in ("recflow-2stage", "recflow-3stage")
    }


@pytest.fixture(params=["recflow-2stage", "recflow-3stage"])
def world(request, worlds) -> tuple[Setting, CascadeData]:
    return get_setting(request.param), worlds[request.param]


# --------------------------------------------------------------------------------------------------
# Presets and determinism.


def test_presets_and_unknown_name():
    assert {
        "tiny", "small", "recflow-like", "recflow-like-large", "recflow-like-3stage"
    } <= set(WORLD_PRESETS)  # fmt: skip
    assert get_world_config("small") is WORLD_PRESETS["small"]
    with pytest.raises(CascbenchError, match="tiny"):
        get_world_config("tinny")


@pytest.mark.parametrize("world", ["recflow-like", "recflow-like-large", "recflow-like-3stage"])
@pytest.mark.parametrize("setting", ["recflow-2stage", "recflow-3stage"])
def test_recflow_like_fits_both_recflow_settings(world, setting):
    """The paper presets run recflow-like in two and three stages: its funnel must resolve."""
    keep, noise = resolve_funnel(get_setting(setting), get_world_config(world))
    assert keep[-1] == 10 and len(noise) == len(get_setting(setting).groups) - 1


def test_config_is_frozen_and_strict():
    with pytest.raises(pydantic.ValidationError):
        tiny(not_a_knob=1)
    with pytest.raises(pydantic.ValidationError):
        tiny(pool_size=0)
    with pytest.raises(pydantic.ValidationError, match="history_size"):
        tiny(history_size=5)  # shorter than the sequence (10)
    with pytest.raises(pydantic.ValidationError):
        TINY.days = 5  # type: ignore[misc]


def test_same_seed_same_bytes_other_seed_differs(worlds):
    setting = get_setting("recflow-2stage")
    first = worlds["recflow-2stage"]
    again = generate_world(setting, TINY, seed=0)
    other = generate_world(setting, TINY, seed=1)
    for name in ARRAYS:
        assert torch.equal(getattr(first, name), getattr(again, name)), name
    assert first.schema == again.schema
    for name in ("candidates", "sequence", "utility", "context"):
        assert not torch.equal(getattr(first, name), getattr(other, name)), name


# --------------------------------------------------------------------------------------------------
# Shapes, dtypes and the candidate layout (SPEC §1).


def test_shapes_and_dtypes(world):
    setting, data = world
    r, n, length = TINY.days * TINY.requests_per_day, setting.n_candidates, TINY.sequence_length
    assert data.setting_name == setting.name
    expected = {
        "context": ((r, 8), torch.int32),
        "sequence": ((r, length, 5), torch.int32),
        "sequence_mask": ((r, length), torch.bool),
        "candidates": ((r, n, 8), torch.int32),
        "label": ((r, n), torch.float32),
        "group": ((r, n), torch.int64),
        "mask": ((r, n), torch.bool),
        "day": ((r,), torch.int64),
        "request_id": ((r,), torch.int64),
        "utility": ((r, n), torch.float32),
    }
    for name, (shape, dtype) in expected.items():
        value = getattr(data, name)
        assert tuple(value.shape) == shape, name
        assert value.dtype == dtype, name


def test_days_and_request_ids(world):
    _, data = world
    assert data.days() == list(range(TINY.days))
    assert torch.all(data.day[1:] >= data.day[:-1])  # ordered by day
    assert torch.equal(torch.bincount(data.day), torch.full((TINY.days,), TINY.requests_per_day))
    assert len(torch.unique(data.request_id)) == data.n_requests
    # Weekday (context column 0) follows the day: consecutive days, ids 1..7.
    weekday = data.context[:, 0].long()
    assert torch.equal(weekday, (weekday[0] - 1 + data.day) % 7 + 1)


def test_group_tensor_is_slot_group(world):
    setting, data = world
    assert torch.equal(data.group, setting.slot_group.expand(data.n_requests, -1))


def test_padding_only_at_group_ends(world):
    setting, data = world
    start = 0
    for group in setting.groups:
        mask = data.mask[:, start : start + group.size]
        # Real items first: once a slot is padding, every later slot of the group is too.
        assert torch.all(mask[:, 1:] <= mask[:, :-1]), group.name
        start += group.size
    pad = ~data.mask
    assert torch.all(data.candidates[pad] == 0)
    assert torch.all(data.utility[pad] == 0)
    assert torch.all(data.candidates[data.mask] >= 1)


def test_labels_follow_groups(world):
    setting, data = world
    gt = setting.groups[0]
    # The ground truth is always full and graded by its logged rank 1..size, in slot order.
    assert torch.all(data.mask[:, : gt.size])
    expected = gt.label - torch.arange(1, gt.size + 1, dtype=torch.float32)
    assert torch.equal(data.label[:, : gt.size], expected.expand(data.n_requests, -1))
    for index, group in enumerate(setting.groups[1:], start=1):
        assert torch.all(data.label[data.group == index] == group.label), group.name


def test_candidates_distinct_within_request(world):
    _, data = world
    video = torch.where(
        data.mask, data.candidates[:, :, 0].long(), -torch.arange(data.mask.shape[1])
    )
    ordered = torch.sort(video, dim=1).values
    duplicates = (ordered[:, 1:] == ordered[:, :-1]).sum().item()
    assert duplicates <= 0.01 * data.n_requests  # only when a pool has too few distinct draws


# --------------------------------------------------------------------------------------------------
# Features.


def test_sequence_padding_on_top(world):
    _, data = world
    mask = data.sequence_mask
    assert torch.all(mask[:, 1:] >= mask[:, :-1])  # False rows first, then True rows
    assert torch.all(data.sequence[~mask] == 0)
    assert torch.all(data.sequence[mask] >= 1)
    n_real = mask.sum(1)
    assert n_real.min() >= TINY.min_sequence_length
    assert n_real.max() <= TINY.sequence_length
    assert len(torch.unique(n_real)) > 1  # the length varies per request


def test_sequence_comes_from_the_users_history(world):
    _, data = world
    user = data.context[:, 3]
    for u in torch.unique(user)[:5].tolist():
        seen = data.sequence[user == u][:, :, 0]
        assert len(torch.unique(seen[seen > 0])) <= TINY.history_size


def test_ids_within_vocabulary(world):
    _, data = world
    schema = data.schema
    assert [f for f, _ in schema.context_fields] == [
        "weekday", "hour", "minute", "user_id", "device_id", "gender", "age", "province",
    ]  # fmt: skip
    assert [f for f, _ in schema.item_fields] == [
        "video_id", "author_id", "category_level_two", "category_level_one", "upload_type",
    ]  # fmt: skip
    assert [f for f, _ in schema.candidate_fields] == [
        "upload_weekday", "upload_hour", "upload_minute",
    ]  # fmt: skip
    columns = [
        (data.context, schema.context_fields),
        (data.sequence, schema.item_fields),
        (data.candidates, schema.item_fields + schema.candidate_fields),
    ]
    for array, fields in columns:
        for column, (name, vocab) in enumerate(fields):
            values = array[..., column]
            assert values.min() >= 0, name
            assert values.max() < vocab, name
    assert torch.all(data.context >= 1)
    assert dict(schema.context_fields)["user_id"] == TINY.n_users + 1
    assert dict(schema.item_fields)["video_id"] == TINY.n_items + 1


def test_level_two_category_nested_in_level_one(world):
    _, data = world
    items = data.candidates[data.mask][:, :5]
    pairs = torch.unique(items[:, 2:4], dim=0)  # (category two, category one)
    assert len(torch.unique(pairs[:, 0])) == len(pairs)  # one parent per level-two category


# --------------------------------------------------------------------------------------------------
# Utility and the funnel.


def test_utility_decreases_from_ground_truth_to_earliest_filtered(world):
    setting, data = world
    means = [
        data.utility[(data.group == g) & data.mask].mean().item()
        for g in range(len(setting.groups))
    ]
    assert all(a > b for a, b in itertools.pairwise(means)), means


def test_ground_truth_rank_follows_utility(world):
    setting, data = world
    size = setting.groups[0].size
    top, bottom = data.utility[:, : size // 2].mean(), data.utility[:, size // 2 : size].mean()
    assert top > bottom


def test_utility_mix_sets_the_logged_ground_truth():
    setting = get_setting("recflow-2stage")

    def gt_share(data: CascadeData) -> float:
        """Share of the ground truth among the true-utility top-10 of the candidates."""
        top = torch.topk(data.utility.masked_fill(~data.mask, -torch.inf), 10, dim=1).indices
        return (top < 10).float().mean().item()

    noiseless = tiny(funnel_noise=(0.0, 0.0, 0.0), noise_std=0.0, two_tower_logged_stages=0)
    noisy = tiny(funnel_noise=(5.0, 5.0, 5.0))
    assert gt_share(generate_world(setting, noiseless)) == 1.0
    assert gt_share(generate_world(setting, noisy)) < 0.7


def test_missing_groups():
    setting = get_setting("recflow-3stage")
    data = generate_world(setting, tiny(missing_group_prob=1.0))
    required = data.group < 2
    assert torch.all(data.mask[required])
    assert not torch.any(data.mask[~required])
    data = generate_world(setting, tiny(missing_group_prob=0.0))
    assert torch.all(data.mask)
    data = generate_world(setting, tiny(missing_group_prob=0.5))
    optional = data.mask[:, 20:].view(-1, 3, 10).any(2)  # groups 2..4 present per request
    assert 0.4 < optional.float().mean() < 0.6


def test_short_group_is_padded():
    # The last logged stage filters only 5 of 15: rank_neg holds 5 real items, then padding.
    setting = get_setting("recflow-2stage")
    data = generate_world(setting, tiny(funnel_keep=(40, 15, 10), missing_group_prob=0.0))
    assert torch.all(data.mask[:, 10:15])
    assert not torch.any(data.mask[:, 15:20])
    assert torch.all(data.label[:, 15:20] == 7.0)


def test_custom_and_four_stage_settings():
    custom = Setting(
        name="custom-2group",
        groups=(Group("pos", 5, 20.0, graded=True), Group("neg", 15, 1.0)),
        stages=(Stage("retrieval", "dssm", 10, ("pos", "neg")), Stage("rank", "din", 5, ("pos",))),
        k=5,
    )
    data = generate_world(custom, tiny())
    assert data.label.shape == (TINY.days * TINY.requests_per_day, 20)
    assert torch.equal(data.label[0, :5], torch.tensor([19.0, 18.0, 17.0, 16.0, 15.0]))
    assert resolve_funnel(custom, TINY)[0] == (5,)
    four = generate_world(get_setting("synthetic-4stage"), TINY)
    assert four.candidates.shape[1] == 50


# --------------------------------------------------------------------------------------------------
# A config that does not fit the setting.


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"funnel_keep": (40, 10)}, "funnel_keep"),  # 2 counts for 3 logged stages
        ({"funnel_keep": (40, 40, 10)}, "funnel_keep"),  # not strictly decreasing
        ({"funnel_keep": (100, 30, 10)}, "funnel_keep"),  # keeps the whole pool
        ({"funnel_keep": (40, 20, 12)}, "funnel_keep"),  # last != ground-truth size
        ({"funnel_noise": (1.0, 0.5)}, "funnel_noise"),  # wrong length
        ({"pool_size": 10}, "pool_size"),  # no larger than the ground truth
        ({"pool_size": 30}, "pool_size"),  # too small for the default funnel
    ],
)
def test_config_that_does_not_fit_the_setting(changes, field):
    setting = get_setting("recflow-2stage")
    with pytest.raises(CascbenchError, match=field):
        generate_world(setting, tiny(**changes))


def test_single_group_setting_is_refused():
    setting = Setting(
        name="one-group",
        groups=(Group("pos", 10, 30.0, graded=True),),
        stages=(Stage("rank", "din", 10, ("pos",)),),
        k=10,
    )
    with pytest.raises(CascbenchError, match="two groups"):
        generate_world(setting, TINY)
