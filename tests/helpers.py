"""Test helpers: small settings and random targets in the canonical layout."""

from __future__ import annotations

import torch

from cascbench.batch import Targets
from cascbench.settings import Group, Setting, Stage


def tiny_setting(n_stages: int = 2) -> Setting:
    """N = 8 candidates in three groups (gt 3, neg 3, early neg 2), K = 2."""
    groups = (Group("gt", 3, 30.0, graded=True), Group("neg", 3, 7.0), Group("early", 2, 5.0))
    names = ("gt", "neg", "early")
    stages = {
        1: (Stage("ranking", "din", 4, names),),
        2: (Stage("retrieval", "dssm", 5, names), Stage("ranking", "din", 3, ("gt", "neg"))),
        3: (
            Stage("retrieval", "dssm", 6, names),
            Stage("prerank", "mlp", 4, names),
            Stage("ranking", "din", 3, ("gt", "neg")),
        ),
    }[n_stages]
    return Setting(name=f"tiny-{n_stages}", groups=groups, stages=stages, k=2)


def random_targets(
    setting: Setting, batch: int, generator: torch.Generator, pad_prob: float = 0.2
) -> Targets:
    """Targets in the canonical layout: graded ground truth, group labels, random padding."""
    slot_group = setting.slot_group
    labels = torch.tensor([g.label for g in setting.groups])[slot_group].repeat(batch, 1)
    gt_size = setting.groups[0].size
    ranks = torch.rand(batch, gt_size, generator=generator).argsort(-1).float() + 1
    labels[:, :gt_size] = setting.groups[0].label - ranks
    mask = torch.rand(batch, setting.n_candidates, generator=generator) > pad_prob
    group = slot_group.expand(batch, -1).clone()
    return Targets(labels, group, mask)
