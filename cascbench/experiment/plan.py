"""Planning a grid: an experiment expanded into runs, each resolved once, with its id and label.

`plan_experiment` is the one planner: methods × grid combinations × seeds, each config resolved
(method defaults filled in, hyper-parameters, setting and dataset checked) with errors that name
where in the experiment they come from. `plan_runs` gives resolved configs their ids (computed once,
from the resolved config, never resolved again), merges duplicates and labels the runs; the
executor runs exactly the config whose id the store files it under.
"""

from __future__ import annotations

import copy
import itertools
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from cascbench.datasets import check_dataset
from cascbench.datasets.synthetic import get_world_config
from cascbench.errors import CascbenchError, closest, unknown_name_error
from cascbench.experiment.config import (
    DatasetConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    resolved_run_id,
)
from cascbench.experiment.configfile import ExperimentFile, MethodVariant, describe_errors
from cascbench.experiment.labels import run_label
from cascbench.method import get_method_class
from cascbench.settings import get_setting

#: Top-level grid keys that are not a method's parameter.
_SECTIONS = {"train": TrainConfig, "dataset": DatasetConfig, "model": ModelConfig}


@dataclass(frozen=True)
class PlannedRun:
    """A run of a grid: its id, resolved config and a short label for progress lines."""

    run_id: str
    config: RunConfig
    label: str


def plan_runs(resolved: Sequence[RunConfig]) -> tuple[list[PlannedRun], int]:
    """The runs of resolved configs (`RunConfig.resolved`) with their ids and labels
    (`run_label`), in order, each id once; returns (runs, duplicates dropped)."""
    unique: dict[str, RunConfig] = {}
    for config in resolved:
        unique.setdefault(resolved_run_id(config), config)
    runs = [PlannedRun(run_id, config, run_label(config)) for run_id, config in unique.items()]
    return runs, len(resolved) - len(runs)


def plan_experiment(experiment: ExperimentFile, source: str) -> tuple[list[PlannedRun], int]:
    """Every run of the grid, resolved once: methods × grid combinations × seeds (a method's grid
    keys multiply that method's runs only); returns (runs, duplicates merged), as `plan_runs`."""
    for index, variant in enumerate(experiment.methods):
        _checked(f"{source}: methods[{index}]", lambda v=variant: get_method_class(v.name))
    shared, per_method = _split_grid(experiment, source)
    for setting in shared.get("setting", [experiment.setting]):
        where = "grid.setting" if "setting" in shared else "setting"
        _checked(f"{source}: {where}", lambda s=setting: get_setting(s))
    base = experiment.model_dump(mode="json")
    configs, datasets = [], {}
    for index, variant in enumerate(experiment.methods):
        own = per_method.get(variant.name, {})
        keys = [*shared, *(f"{variant.name}.{p}" for p in own)]
        for values in itertools.product(*shared.values(), *own.values()):
            choice = dict(zip(keys, values, strict=True))
            where = f"{source}: methods[{index}] ({variant.name})" + (
                " with " + ", ".join(f"grid.{k}={v!r}" for k, v in choice.items()) if choice else ""
            )
            fields = _run_fields(base, variant, choice)
            for seed in experiment.seeds:
                config = _checked(where, lambda f=fields, s=seed: _resolved_config(f, s))
                datasets.setdefault(config.dataset.model_dump_json(), (config.dataset, choice))
                configs.append(config)
    for dataset, choice in datasets.values():
        _check_dataset(dataset, choice, source)
    return plan_runs(configs)


def _check_dataset(dataset: DatasetConfig, choice: dict[str, Any], source: str) -> None:
    """`check_dataset`, its errors prefixed by the field at fault: "dataset.world" (or
    "grid.dataset.world='huge'" when the grid set it), "dataset.world_options", "dataset.data_dir"."""

    def where(field: str) -> str:
        swept = [
            f"grid.{k}={v!r}" for k, v in choice.items() if k == field or k.startswith(f"{field}.")
        ]
        return f"{source}: " + (", ".join(swept) if swept else field)

    if dataset.kind == "synthetic":
        _checked(where("dataset.world"), lambda: get_world_config(dataset.world))
        _checked(where("dataset.world_options"), lambda: check_dataset(dataset))
    else:
        _checked(where("dataset.data_dir"), lambda: check_dataset(dataset))


def _split_grid(
    experiment: ExperimentFile, source: str
) -> tuple[dict[str, list[Any]], dict[str, dict[str, list[Any]]]]:
    """Grid keys checked and split: (shared keys -> values, method -> {parameter -> values})."""
    names = {v.name for v in experiment.methods}
    shared: dict[str, list[Any]] = {}
    per_method: dict[str, dict[str, list[Any]]] = {}
    grid = dict(experiment.grid)
    if experiment.world_seeds is not None:
        if "dataset.seed" in grid:
            raise CascbenchError(
                f"{source}: world_seeds and grid.dataset.seed both set the world seeds; keep one."
            )
        grid["dataset.seed"] = list(experiment.world_seeds)
    for key, values in grid.items():
        head, _, rest = key.partition(".")
        where = f"{source}: grid.{key}"
        if key == "setting":
            shared[key] = values
        elif head in _SECTIONS and rest:
            field = rest.split(".")[0]
            fields = _SECTIONS[head].model_fields
            if field not in fields:
                raise CascbenchError(
                    f"{where}: {unknown_name_error(f'{head} field', field, fields)}"
                )
            if rest.count(".") and not (head == "dataset" and field == "world_options"):
                raise CascbenchError(f"{where}: {head}.{field} has no sub-keys.")
            fixed = [
                i for i, v in enumerate(experiment.methods) if head == "train" and rest in v.train
            ]
            if fixed:
                raise CascbenchError(
                    f"{where}: methods[{fixed[0]}] fixes train.{rest} for its method; a training "
                    f"field is either fixed per method or swept in grid."
                )
            shared[key] = values
        elif head in names and rest:
            params = get_method_class(head).Params.model_fields
            if rest not in params:
                unknown = unknown_name_error(f"{head} parameter", rest, params)
                raise CascbenchError(f"{where}: {unknown}")
            fixed = [i for i, v in enumerate(experiment.methods) if rest in v.params]
            if fixed:
                raise CascbenchError(
                    f"{where}: methods[{fixed[0]}] fixes {head}.{rest}; a parameter is either "
                    f"fixed in methods or swept in grid."
                )
            per_method.setdefault(head, {})[rest] = values
        else:
            valid = ["setting", "train.<field>", "dataset.<field>", "model.<field>"]
            valid.append("<method>.<parameter>")
            hint = closest(head, [*names, *_SECTIONS])
            raise CascbenchError(
                f"{where}: not a grid key"
                + (f" (did you mean {hint!r}?)" if hint else "")
                + f". Grid keys are {', '.join(valid)}, for the methods {', '.join(sorted(names))}."
            )
    return shared, per_method


def _run_fields(base: dict, variant: MethodVariant, choice: dict[str, Any]) -> dict[str, Any]:
    """One run's config fields (seed aside): the experiment's, the variant's, the grid's."""
    fields = {
        "setting": base["setting"],
        "dataset": copy.deepcopy(base["dataset"]),
        "method": variant.name,
        "method_params": dict(variant.params),
        "train": {**base["train"], **variant.train},
        "model": dict(base["model"]),
    }
    for key, value in choice.items():
        head, _, rest = key.partition(".")
        if key == "setting":
            fields["setting"] = value
        elif head == variant.name:
            fields["method_params"][rest] = value
        elif rest.startswith("world_options."):
            fields["dataset"]["world_options"][rest.removeprefix("world_options.")] = value
        else:
            fields[head][rest] = value
    return fields


def _resolved_config(fields: dict[str, Any], seed: int) -> RunConfig:
    try:
        config = RunConfig.model_validate({**fields, "seed": seed})
    except pydantic.ValidationError as exc:
        raise CascbenchError(describe_errors("", exc, RunConfig).removeprefix(": ")) from None
    return config.resolved()


def _checked(where: str, make: typing.Callable[[], Any]) -> Any:
    """make(), with a CascbenchError's message prefixed by where it comes from."""
    try:
        return make()
    except CascbenchError as exc:
        raise CascbenchError(f"{where}: {exc}") from None
