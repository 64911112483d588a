"""Settings: the candidate layout (groups), the cascade's stages and quotas, and K (SPEC §1-2).

A setting is pure description; datasets lay candidates out group by group in its order, stage models
and methods read the quotas and the groups each stage's BCE may see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from cascbench.errors import CascbenchError, unknown_name_error

if TYPE_CHECKING:
    import torch

STAGE_MODELS = ("dssm", "mlp", "din")


@dataclass(frozen=True)
class Group:
    """A candidate group of the logged funnel.

    `label` is the relevance of every item in the group; for a `graded` group (the ground truth) the
    label of an item is `label - rank_index`, its logged position counted from 1, and a padded slot
    keeps `label` itself (a missing rank index counts as 0, as in the release).
    """

    name: str
    size: int
    label: float
    graded: bool = False


@dataclass(frozen=True)
class Stage:
    """One stage of the cascade being trained: its model kind, quota, and the groups its BCE sees."""

    name: str
    model: str
    quota: int
    bce_groups: tuple[str, ...]


@dataclass(frozen=True)
class Setting:
    """Groups (ground truth first), stages (earliest first) and K, validated when built."""

    name: str
    groups: tuple[Group, ...]
    stages: tuple[Stage, ...]
    k: int
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def n_candidates(self) -> int:
        """N, the number of candidate slots per request."""
        return sum(g.size for g in self.groups)

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    @property
    def quotas(self) -> tuple[int, ...]:
        return tuple(s.quota for s in self.stages)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    @cached_property
    def slot_group(self) -> torch.Tensor:
        """int64 [N]: the group index of every slot in the canonical layout."""
        import torch  # here, not at the top: `cascbench list settings` runs without torch

        sizes = torch.tensor([g.size for g in self.groups])
        return torch.repeat_interleave(torch.arange(len(self.groups)), sizes)

    def visible_slots(self, stage: int) -> torch.Tensor:
        """bool [N]: the slots whose group stage `stage`'s BCE is trained on (SPEC §5.1)."""
        import torch

        visible = [self.group_names.index(g) for g in self.stages[stage].bce_groups]
        return torch.isin(self.slot_group, torch.tensor(visible))


def _validate(setting: Setting) -> None:
    where = f"setting {setting.name!r}"
    if not setting.groups or not setting.stages:
        raise CascbenchError(f"{where}: needs at least one group and one stage.")
    names = [g.name for g in setting.groups]
    if len(set(names)) != len(names):
        raise CascbenchError(f"{where}: group names must be unique, got {names}.")
    for g in setting.groups:
        if g.size < 1:
            raise CascbenchError(f"{where}: group {g.name!r} has size {g.size}; it must be >= 1.")
    stage_names = [s.name for s in setting.stages]
    if len(set(stage_names)) != len(stage_names):
        raise CascbenchError(f"{where}: stage names must be unique, got {stage_names}.")
    n = setting.n_candidates
    previous = n + 1
    for s in setting.stages:
        if s.model not in STAGE_MODELS:
            raise unknown_name_error("stage model", s.model, STAGE_MODELS)
        if not 1 <= s.quota <= n:
            raise CascbenchError(
                f"{where}: stage {s.name!r} has quota {s.quota}; it must be in [1, N={n}]."
            )
        if s.quota >= previous:
            raise CascbenchError(
                f"{where}: quotas must strictly decrease along the cascade, got {setting.quotas}."
            )
        previous = s.quota
        for g in s.bce_groups:
            if g not in names:
                raise unknown_name_error(f"group (in stage {s.name!r} bce_groups)", g, names)
    if not 1 <= setting.k <= setting.stages[-1].quota:
        raise CascbenchError(
            f"{where}: K={setting.k} must be in [1, last quota={setting.stages[-1].quota}]."
        )
    if setting.k > setting.groups[0].size:
        raise CascbenchError(
            f"{where}: K={setting.k} is larger than the ground-truth group "
            f"{setting.groups[0].name!r} ({setting.groups[0].size} slots)."
        )


def _recflow_2stage() -> Setting:
    groups = ("rank_pos", "rank_neg", "coarse_neg", "prerank_neg")
    return Setting(
        name="recflow-2stage",
        groups=(
            Group("rank_pos", 10, 30.0, graded=True),
            Group("rank_neg", 10, 7.0),
            Group("coarse_neg", 10, 6.0),
            Group("prerank_neg", 10, 5.0),
        ),
        stages=(
            Stage("retrieval", "dssm", 30, groups),
            Stage("ranking", "din", 20, ("rank_pos", "rank_neg")),
        ),
        k=10,
        description="RecFlow two stages: DSSM keeps 30 of 40, DIN keeps 20 (LCRON paper, Table 2).",
    )


def _recflow_3stage() -> Setting:
    groups = ("rerank_pos", "rerank_neg", "rank_neg", "coarse_neg", "prerank_neg")
    return Setting(
        name="recflow-3stage",
        groups=(
            Group("rerank_pos", 10, 30.0, graded=True),
            Group("rerank_neg", 10, 8.0),
            Group("rank_neg", 10, 7.0),
            Group("coarse_neg", 10, 6.0),
            Group("prerank_neg", 10, 5.0),
        ),
        stages=(
            Stage("retrieval", "dssm", 40, groups),
            Stage("prerank", "mlp", 30, groups[:4]),
            Stage("ranking", "din", 20, ("rerank_pos", "rerank_neg")),
        ),
        k=10,
        description="RecFlow three stages: DSSM keeps 40 of 50, MLP 30, DIN 20 (Table 6).",
    )


def _synthetic_1stage() -> Setting:
    groups = ("rank_pos", "rank_neg", "coarse_neg", "prerank_neg")
    return Setting(
        name="synthetic-1stage",
        groups=_recflow_2stage().groups,
        stages=(Stage("ranking", "din", 20, groups),),
        k=10,
        description="One DIN stage keeping 20 of 40: the single-stage limit, for sanity checks.",
    )


def _synthetic_4stage() -> Setting:
    groups = ("rerank_pos", "rerank_neg", "rank_neg", "coarse_neg", "prerank_neg")
    return Setting(
        name="synthetic-4stage",
        groups=_recflow_3stage().groups,
        stages=(
            Stage("retrieval", "dssm", 45, groups),
            Stage("prerank", "mlp", 35, groups[:4]),
            Stage("rank", "din", 25, groups[:3]),
            Stage("ranking", "din", 15, ("rerank_pos", "rerank_neg")),
        ),
        k=10,
        description="Four stages (DSSM 45 → MLP 35 → DIN 25 → DIN 15) on the three-stage layout.",
    )


_BUILTIN = {
    s.name: s
    for s in (_recflow_2stage(), _recflow_3stage(), _synthetic_1stage(), _synthetic_4stage())
}


def list_settings() -> dict[str, Setting]:
    """The built-in settings by name."""
    return dict(_BUILTIN)


def get_setting(name: str) -> Setting:
    """A built-in setting by name, e.g. "recflow-2stage"; unknown names list the valid ones."""
    if name not in _BUILTIN:
        raise unknown_name_error("setting", name, _BUILTIN)
    return _BUILTIN[name]
