"""Tiny synthetic worlds with short and absent groups, exported to RecFlow format."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from cascbench.data import CascadeData
from cascbench.datasets.recflow_writer import export_recflow
from cascbench.datasets.synthetic import WorldConfig, generate_world, get_world_config
from cascbench.settings import get_setting

# Survivors of each logged stage from a pool of 100: the last filtered groups come out short
# (two stages: rank_neg gets 5 items of 10; three stages: rank_neg 9, rerank_neg 6).
SHORT_FUNNEL = {"recflow-2stage": (30, 15, 10), "recflow-3stage": (40, 25, 16, 10)}


def tiny_world(setting_name: str, short: bool = True) -> CascadeData:
    """The tiny world (3 days x 200 requests) for a RecFlow setting.

    With `short`: some groups are short for every request, optional groups are absent in about
    20% of requests, and every fifth request has only 7 to 9 ground-truth items (padded slots
    keep label 30, as SPEC §2 says).
    """
    setting = get_setting(setting_name)
    config = get_world_config("tiny")
    if short:
        config = WorldConfig(
            **{
                **config.model_dump(),
                "funnel_keep": SHORT_FUNNEL[setting_name],
                "missing_group_prob": 0.2,
            }
        )
    world = generate_world(setting, config, seed=0)
    return shorten_ground_truth(world) if short else world


def shorten_ground_truth(world: CascadeData) -> CascadeData:
    """Every fifth request keeps only its first 7, 8 or 9 ground-truth items."""
    setting = get_setting(world.setting_name)
    gt_size = setting.groups[0].size
    rows = torch.arange(world.n_requests)
    kept = gt_size - 1 - (rows // 5) % 3  # 9, 8, 7, ...
    kept = torch.where(rows % 5 == 0, kept, gt_size)
    drop = torch.zeros_like(world.mask)
    drop[:, :gt_size] = torch.arange(gt_size)[None, :] >= kept[:, None]
    return dataclasses.replace(
        world,
        mask=world.mask & ~drop,
        candidates=world.candidates.masked_fill(drop[:, :, None], 0),
        label=torch.where(drop, setting.groups[0].label, world.label),
        utility=world.utility.masked_fill(drop, 0.0),
    )


def export_tiny(path: Path, setting_name: str = "recflow-2stage", short: bool = True, **options):
    """Export the tiny world to `path`; returns (world, day names)."""
    world = tiny_world(setting_name, short)
    days = export_recflow(world, get_setting(setting_name), path, chunk_rows=1_000, **options)
    return world, days
