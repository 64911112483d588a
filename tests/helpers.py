"""Test helpers: small settings and random targets in the canonical layout."""

from __future__ import annotations

import math

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


def six_setting(ranking_quota: int = 3) -> Setting:
    """N = 6 (gt 2, neg 2, early 2), retrieval keeps 4, ranking keeps `ranking_quota`, K = 2."""
    groups = (Group("gt", 2, 30.0, graded=True), Group("neg", 2, 7.0), Group("early", 2, 5.0))
    stages = (
        Stage("retrieval", "dssm", 4, ("gt", "neg", "early")),
        Stage("ranking", "din", ranking_quota, ("gt", "neg")),
    )
    return Setting(name=f"six-{ranking_quota}", groups=groups, stages=stages, k=2)


def loop_softmax(values: list[float]) -> list[float]:
    """Softmax of a list, one float at a time (for loop reference implementations)."""
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def loop_neuralsort(values: list[float], tau: float) -> list[list[float]]:
    """NeuralSort (SPEC §4) of a list, written out with loops: rows are positions."""
    n = len(values)
    spread = [sum(abs(v - u) for u in values) for v in values]
    return [
        loop_softmax([((n + 1 - 2 * r) * values[i] - spread[i]) / tau for i in range(n)])
        for r in range(1, n + 1)
    ]


def loop_masked(operator, values: list[float], mask: list[bool], tau: float, clean: bool) -> list:
    """The operator's matrix (e.g. `loop_neuralsort`) masked as SPEC §4 says: the prefix mask p⊗p
    after the softmax (reference), or the valid items sorted alone, placed in their slots (clean)."""
    n, count = len(values), sum(mask)
    if not clean:
        matrix = operator(values, tau)
        return [[matrix[r][j] * (r < count) * (j < count) for j in range(n)] for r in range(n)]
    valid = [j for j in range(n) if mask[j]]
    small = operator([values[j] for j in valid], tau) if valid else []
    matrix = [[0.0] * n for _ in range(n)]
    for r in range(len(valid)):
        for c, j in enumerate(valid):
            matrix[r][j] = small[r][c]
    return matrix
