import pytest

from cascbench.errors import CascbenchError
from cascbench.settings import Group, Setting, Stage, get_setting, list_settings

GROUPS = (Group("gt", 10, 30.0, graded=True), Group("neg", 10, 7.0), Group("early", 10, 5.0))
ALL = ("gt", "neg", "early")


def build(quotas, k=10, groups=GROUPS, bce=ALL, model="dssm"):
    stages = tuple(Stage(f"s{i}", model, q, bce) for i, q in enumerate(quotas))
    return Setting(name="custom", groups=groups, stages=stages, k=k)


def test_recflow_settings_match_the_spec():
    two, three = get_setting("recflow-2stage"), get_setting("recflow-3stage")
    assert (two.n_candidates, two.quotas, two.k) == (40, (30, 20), 10)
    assert two.stage_names == ("retrieval", "ranking")
    assert [s.model for s in two.stages] == ["dssm", "din"]
    assert two.visible_slots(1).tolist() == [True] * 20 + [False] * 20
    assert (three.n_candidates, three.quotas) == (50, (40, 30, 20))
    assert three.stage_names == ("retrieval", "prerank", "ranking")
    assert three.visible_slots(1).tolist() == [True] * 40 + [False] * 10
    assert three.visible_slots(2).tolist() == [True] * 20 + [False] * 30
    assert [g.label for g in three.groups] == [30.0, 8.0, 7.0, 6.0, 5.0]
    assert three.slot_group.tolist() == [g for g in range(5) for _ in range(10)]
    assert set(list_settings()) >= {"recflow-2stage", "recflow-3stage"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"quotas": (31, 20)}, "quota 31; it must be in \\[1, N=30\\]"),
        ({"quotas": (20, 20)}, "strictly decrease"),
        ({"quotas": (15, 20)}, "strictly decrease"),
        ({"quotas": (25, 8)}, "K=10 must be in \\[1, last quota=8\\]"),
        ({"quotas": (25, 20), "bce": ("gt", "nope")}, "Unknown group .*'nope'"),
        ({"quotas": (25, 20), "model": "gbdt"}, "Unknown stage model 'gbdt'"),
        ({"quotas": (25, 20), "k": 11}, "larger than the ground-truth group"),
    ],
)
def test_impossible_settings_are_refused_when_built(kwargs, message):
    with pytest.raises(CascbenchError, match=message):
        build(**kwargs)


def test_unknown_setting_suggests_the_closest():
    with pytest.raises(CascbenchError, match="Did you mean 'recflow-3stage'"):
        get_setting("recflow-3stages")
