"""Run identity: one run spelled two ways has one id; any change of a value, of a default, of
the evaluator's or the method's version gives a new id; execution details do not count."""

import typing

import pytest
from pydantic import Field

import cascbench as cb
import cascbench.catalogue as catalogue_module
from cascbench.experiment.config import (
    EXECUTION_ONLY_TRAIN_FIELDS,
    DatasetConfig,
    RunConfig,
    TrainConfig,
)
from cascbench.experiment.configfile import validate_experiment
from cascbench.experiment.plan import plan_experiment
from cascbench.method import get_method_class
from cascbench.models.config import CLEAN_MODEL, ModelConfig


def ids_of(document):
    experiment = validate_experiment(document, "test")
    return [run.run_id for run in plan_experiment(experiment, "test")[0]]


def test_two_spellings_of_one_grid_give_the_same_ids():
    terse = {
        "dataset": {"world": "tiny"},
        "methods": "lcron,bce",
        "seeds": "0-1",
        "grid": {"lcron.tau": [50]},
    }
    verbose = {
        "train": {"lr": 0.01, "device": "cpu", "eval_batch_size": 7, "batch_size": 1024},
        "methods": [{"lcron": {"tau": 50.0, "label_matrix": "soft", "k_e2e": "k"}}, "bce"],
        "seeds": [0, 1],
        "dataset": {"seed": 0, "kind": "synthetic", "world_options": {}, "world": "tiny"},
        "setting": "recflow-2stage",
    }
    assert ids_of(terse) == ids_of(verbose)
    flags = [
        RunConfig(method=method, dataset=DatasetConfig(world="tiny"), train=TrainConfig(), seed=s)
        for method in ["lcron", "bce"]
        for s in [0, 1]
    ]
    assert ids_of(terse) == [c.run_id() for c in flags]


def alternative(annotation, value):
    """A valid value different from `value` for a field of this type."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal or (
        args and typing.get_origin(args[0]) is typing.Literal
    ):
        choices = typing.get_args(annotation if not args else args[0]) or args
        return next(c for c in choices if c != value)
    kind = args[0] if args else annotation
    if kind is bool:
        return not value
    if kind is int:
        return value + 1
    if kind is float:
        return 0.5 if value is None else value * 0.5
    raise AssertionError(f"no alternative for {annotation}")


def test_every_value_of_a_run_changes_its_id():
    base = RunConfig(method="lcron", dataset=DatasetConfig(world="tiny")).resolved()
    changed = [
        base.model_copy(update={"setting": "recflow-3stage"}),
        base.model_copy(update={"method": "bce", "method_params": {}}),
        base.model_copy(update={"seed": 1}),
        base.model_copy(update={"dataset": DatasetConfig(world="small")}),
        base.model_copy(update={"dataset": DatasetConfig(world="tiny", seed=1)}),
        base.model_copy(
            update={"dataset": DatasetConfig(world="tiny", world_options={"noise_std": 1.0})}
        ),
    ]
    for name, field in get_method_class("lcron").Params.model_fields.items():
        value = alternative(field.annotation, base.method_params[name])
        changed.append(
            base.model_copy(update={"method_params": {**base.method_params, name: value}})
        )
    for name, field in TrainConfig.model_fields.items():
        if name not in EXECUTION_ONLY_TRAIN_FIELDS:
            value = alternative(field.annotation, getattr(base.train, name))
            train = TrainConfig(**{**base.train.model_dump(), name: value})
            changed.append(base.model_copy(update={"train": train}))
    ids = [c.run_id() for c in changed]
    assert base.run_id() not in ids
    assert len(set(ids)) == len(ids)


def test_execution_details_do_not_change_the_id():
    base = RunConfig(method="bce")
    for name in EXECUTION_ONLY_TRAIN_FIELDS:
        field = TrainConfig.model_fields[name]
        value = "cuda:1" if name == "device" else alternative(field.annotation, field.default)
        train = TrainConfig(**{name: value})
        assert base.model_copy(update={"train": train}).run_id() == base.run_id()


class _DefaultOne(cb.MethodParams):
    alpha: float = Field(default=1.0, gt=0)


class _DefaultTwo(cb.MethodParams):
    alpha: float = Field(default=2.0, gt=0)


@cb.register_method("test_changing_default")
class ChangingDefault(cb.Method):
    Params = _DefaultOne

    def loss(self, scores, targets):
        return cb.LossOutput(total=scores.mean())


def test_a_changed_default_gives_a_new_id(monkeypatch):
    implicit = RunConfig(method="test_changing_default")
    before = implicit.run_id()
    monkeypatch.setattr(ChangingDefault, "Params", _DefaultTwo)
    assert implicit.run_id() != before  # the same spelling now means another run
    explicit = RunConfig(method="test_changing_default", method_params={"alpha": 1.0})
    assert explicit.run_id() == before  # the old run, spelled out, keeps its id


@pytest.mark.parametrize("target", ["evaluator", "method"])
def test_a_new_evaluator_or_method_version_gives_a_new_id(monkeypatch, target):
    config = RunConfig(method="bce")
    before = config.run_id()
    if target == "evaluator":
        monkeypatch.setattr(catalogue_module, "EVALUATOR_VERSION", "changed")
    else:
        monkeypatch.setattr(get_method_class("bce"), "version", "changed")
    assert config.run_id() != before


def test_todays_ids_are_stable():
    """Ids written by earlier versions must not move: recorded values. Runs from before the
    reference models keep their id when spelled with the clean options that reproduce them;
    the reference models (the default) gave new ids."""
    dataset = DatasetConfig(world="tiny")
    reference = RunConfig(method="bce", dataset=dataset, train=TrainConfig(batch_size=64))
    assert reference.run_id() == "b31708e300d4cb56"
    clean = reference.model_copy(
        update={
            "train": TrainConfig(batch_size=64, drop_last=False),
            "model": ModelConfig(**CLEAN_MODEL),
        }
    )
    assert clean.run_id() == "cfe90befa38af0ae"
