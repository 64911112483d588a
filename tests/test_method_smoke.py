"""Every in-tree method trains on the tiny world: its loss goes down and its cascade beats chance."""

import pytest
import torch

import cascbench as cb
from cascbench.datasets import load_dataset
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.runner import train_run

TINY = DatasetConfig(world="tiny")
IN_TREE = sorted(
    name
    for name, cls in cb.list_methods().items()
    if cls.__module__.startswith("cascbench.methods")
)


@pytest.fixture(scope="module")
def data():
    return load_dataset(TINY, "recflow-2stage")


@pytest.fixture(scope="module")
def random_joint_recall(data):
    """The joint recall of scores drawn at random, averaged over a few draws."""
    setting = cb.get_setting("recflow-2stage")
    rows = data.rows_of_days([data.days()[-1]])
    generator = torch.Generator().manual_seed(0)
    draws = [
        cb.evaluate(
            torch.rand(2, rows.numel(), 40, generator=generator), data.targets(rows), setting
        )
        for _ in range(5)
    ]
    return sum(d.means["joint_recall"] for d in draws) / len(draws)


def test_every_paper_method_is_registered():
    paper = {"bce", "icc", "rankflow", "fs_ranknet", "fs_lambdaloss", "arf", "arf_v2", "lcron"}
    assert paper <= set(IN_TREE)


# ICC's near-hard gates (σ = 1e-3) leave their degenerate start later than the other methods: on
# the tiny world it needs more and smaller steps (on the small world, with the paper's lr 0.01 and
# batch 1024, its reference reaches a joint recall of 0.80 against 0.52 for chance). Its start is
# chaotic: floating-point noise in the models (a faster DIN, say, or another CPU) flipped lr 0.03 /
# batch 32 from learning to stalling, and lr 0.02 / batch 16 on an AMD EPYC (0.61 against the
# 0.63 asked). Eight epochs at lr 0.01 / batch 32 reach 0.69-0.70 there for seeds 0, 1 and 2.
TRAIN_OVERRIDES = {"icc": {"lr": 0.01, "batch_size": 32, "epochs": 8}}


@pytest.mark.parametrize("method", IN_TREE)
def test_loss_decreases_and_cascade_beats_chance(method, data, random_joint_recall):
    train = TrainConfig(
        **{"batch_size": 64, "epochs": 3, "device": "cpu", **TRAIN_OVERRIDES.get(method, {})}
    )
    config = RunConfig(method=method, dataset=TINY, train=train)
    record = train_run(config, data)
    # RankFlow's distillation target (the next stage's scores) moves as that stage learns, so its
    # total can rise while every stage improves: watch its BCE terms instead.
    watched = (
        [c for c in record.curve if c.startswith("bce/")] if method == "rankflow" else ["total"]
    )
    loss = [sum(values) for values in zip(*(record.curve[c] for c in watched), strict=True)]
    third = len(loss) // 3
    assert sum(loss[-third:]) / third < sum(loss[:third]) / third
    assert record.metrics["joint_recall"] > random_joint_recall + 0.1


@pytest.mark.parametrize("sort", ["softsort", "lapsum", "sparse_topk", "diffsort", "ot"])
def test_lcron_learns_with_every_relaxation(sort, data, random_joint_recall):
    """LCRON end to end with each `sort=` (issue 17), at its default τ = 50 like NeuralSort."""
    train = TrainConfig(batch_size=64, epochs=3, device="cpu")
    config = RunConfig(method="lcron", method_params={"sort": sort}, dataset=TINY, train=train)
    record = train_run(config, data)
    loss = record.curve["total"]
    third = len(loss) // 3
    assert sum(loss[-third:]) / third < sum(loss[:third]) / third
    assert record.metrics["joint_recall"] > random_joint_recall + 0.1
