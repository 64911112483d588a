"""The logged production funnel: its shape for a setting, its simulation, the groups and labels.

5. A production funnel of G - 1 logged stages (G = number of groups) ranks the pool with noisy
   scorers of the signal and the hidden effect (earlier stages noisier; the earliest see only the
   two-tower part of the signal) and logs the groups exactly like RecFlow: the last stage's
   survivors are the graded ground truth in rank order, and each other group is a random sample
   of the items one stage filtered out.
"""

from __future__ import annotations

import torch

from cascbench.datasets.synthetic.config import WorldConfig
from cascbench.datasets.synthetic.utility import _Utility
from cascbench.errors import CascbenchError
from cascbench.settings import Setting

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
        score = utility.logged(config, with_interaction=j >= two_tower)
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


def _labels(setting: Setting, rank: torch.Tensor) -> torch.Tensor:
    """float32 [R, N]: the group's label, minus the rank index in a graded group.

    rank int64 [R, N] is 0 on padding, so a padded slot keeps its group's label (SPEC §2).
    """
    base = torch.tensor([g.label for g in setting.groups], dtype=torch.float32)[setting.slot_group]
    graded = torch.tensor([g.graded for g in setting.groups])[setting.slot_group]
    return base - torch.where(graded, rank.float(), torch.zeros(()))
