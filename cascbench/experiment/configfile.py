"""Experiment files: a grid of runs described once in YAML, validated before anything runs.

```yaml
description: what this grid is for
setting: recflow-2stage
dataset: {kind: synthetic, world: tiny, world_options: {noise_std: 0.5}, seed: 0}
methods: [lcron, rankflow, {lcron: {no_e2e: true}}]    # names, or {name: {parameter: value}}
train: {lr: 0.01, batch_size: 256, device: cpu, eval_protocol: clean}   # evaluation options too
seeds: 0-2                                             # or [0, 1, 2], or 3
grid:                                                  # every combination of these values
  lcron.tau: [1, 20, 50]                               # a method's parameter: its runs only
  train.lr: [0.01, 0.001]                              # any training or evaluation field
  dataset.world_options.noise_std: [0.5, 1.0]          # any dataset field or world option
  setting: [recflow-2stage, recflow-3stage]
```

Every section is optional (the defaults are `cascbench run`'s). `--set key=value` overrides any
key (`--set train.lr=0.02`, `--set grid.lcron.tau=[1,20]`, `--set seeds=0-4`), and the command's
flags override both. Errors name the source, the key's path and what is valid. Packaged presets
live in cascbench/presets (`cascbench list presets`).
"""

from __future__ import annotations

import copy
import itertools
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cascbench.errors import CascbenchError, closest, unknown_name_error
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.method import get_method_class
from cascbench.settings import get_setting

DEFAULT_METHODS = ("lcron", "rankflow", "bce")
#: Top-level grid keys that are not a method's parameter.
_SECTIONS = {"train": TrainConfig, "dataset": DatasetConfig}


class MethodVariant(BaseModel):
    """One entry of `methods:`: a method and the hyper-parameters it runs with."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class ExperimentFile(BaseModel):
    """The validated content of an experiment file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    setting: str = "recflow-2stage"
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    methods: list[MethodVariant] = Field(
        default_factory=lambda: [MethodVariant(name=n) for n in DEFAULT_METHODS], min_length=1
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default=[0, 1, 2], min_length=1)
    grid: dict[str, list[Any]] = Field(default_factory=dict)

    @field_validator("methods", mode="before")
    @classmethod
    def _method_entries(cls, value: Any) -> Any:
        """ "lcron,bce", ["lcron", {"lcron": {"tau": 20}}] -> MethodVariant fields."""
        if isinstance(value, str):
            value = [n.strip() for n in value.split(",") if n.strip()]
        if not isinstance(value, list):
            return value  # pydantic reports the type
        entries = []
        for index, entry in enumerate(value):
            if isinstance(entry, str):
                entries.append({"name": entry})
            elif isinstance(entry, dict) and len(entry) == 1:
                ((name, params),) = entry.items()
                entries.append({"name": name, "params": {} if params is None else params})
            else:
                raise ValueError(
                    f"entry {index} ({entry!r}) must be a method name or a mapping "
                    f"{{name: {{parameter: value}}}} with one method"
                )
        return entries

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_list(cls, value: Any) -> Any:
        from cascbench.experiment.grid import parse_seeds

        if isinstance(value, str):
            return parse_seeds(value)  # a CascbenchError is a ValueError: pydantic reports it
        return [value] if isinstance(value, int) else value

    @field_validator("grid")
    @classmethod
    def _non_empty_values(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [key for key, values in grid.items() if not values]
        if empty:
            raise ValueError(f"no values to try for {', '.join(map(repr, empty))}")
        return grid

    def with_method_params(self, params: dict[str, dict[str, Any]]) -> ExperimentFile:
        """Set hyper-parameters on every variant of the named methods (`--param m.p=v`)."""
        names = [v.name for v in self.methods]
        for method in params:
            if method not in names:
                raise unknown_name_error("method (in --param)", method, names)
        methods = [
            v.model_copy(update={"params": {**v.params, **params.get(v.name, {})}})
            for v in self.methods
        ]
        return self.model_copy(update={"methods": methods})


def load_document(path: Path) -> dict[str, Any]:
    """The YAML mapping in `path`; errors name the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CascbenchError(f"cannot read the config file {path}: {exc.strerror}.") from None
    return _parse_document(text, f"config file {path}")


def _parse_document(text: str, source: str) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CascbenchError(f"{source} is not valid YAML: {exc}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise CascbenchError(
            f"{source}: expected a mapping of keys (setting:, methods:, train:, ...) at the "
            f"top, got a {type(document).__name__}."
        )
    return document


def list_presets() -> dict[str, str]:
    """Packaged preset name -> its description."""
    folder = resources.files("cascbench.presets")
    presets = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            name = entry.name.removesuffix(".yaml")
            document = _parse_document(entry.read_text(), f"preset {name!r}")
            presets[name] = str(document.get("description", "")).strip()
    return presets


def preset_document(name: str) -> dict[str, Any]:
    """The YAML mapping of a packaged preset."""
    presets = list_presets()
    if name not in presets:
        raise unknown_name_error("preset", name, presets)
    text = resources.files("cascbench.presets").joinpath(f"{name}.yaml").read_text()
    return _parse_document(text, f"preset {name!r}")


def set_value(document: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of `document` with the dotted `key` set: "train.lr", "dataset.world_options.x";
    under grid the rest of the key is one grid key ("grid.lcron.tau")."""
    parts = key.split(".")
    if not all(parts):
        raise CascbenchError(f"--set {key!r}: expected a dotted key such as train.lr.")
    if parts[0] == "grid" and len(parts) > 1:
        parts = ["grid", ".".join(parts[1:])]
    document = copy.deepcopy(document)
    node = document
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise CascbenchError(
                f"--set {key}: {'.'.join(parts[: depth + 1])} holds a value ({child!r}), not a "
                f"section of keys."
            )
        node = child
    node[parts[-1]] = value
    return document


def validate_experiment(document: dict[str, Any], source: str) -> ExperimentFile:
    """The validated experiment; errors name `source`, each key's path and what is expected."""
    try:
        return ExperimentFile.model_validate(document)
    except pydantic.ValidationError as exc:
        raise CascbenchError(describe_errors(source, exc, ExperimentFile)) from None


def describe_errors(source: str, exc: pydantic.ValidationError, model: type[BaseModel]) -> str:
    """One line per problem: "<source>: train.lr: Input should be greater than 0 (got -1)"."""
    problems = []
    for error in exc.errors():
        loc = error["loc"]
        path = _path(loc)
        if error["type"] == "extra_forbidden":
            valid = _fields_at(model, loc[:-1])
            hint = closest(str(loc[-1]), valid) if valid else None
            problems.append(
                f"{path}: unknown key"
                + (f"; did you mean {hint!r}?" if hint else "")
                + (f" (valid keys here: {', '.join(valid)})" if valid else "")
            )
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{path}: {message} (got {error.get('input')!r})")
    return f"{source}: " + "; ".join(problems)


def _path(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys valid at `loc` inside `model` ([] when it is not a section of fields)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            current = next(iter(typing.get_args(current)), None)  # list[X] -> X
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field else None
        else:
            return []
        if typing.get_origin(current) in (typing.Union, types.UnionType):  # X | None
            current = next((a for a in typing.get_args(current) if a is not type(None)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    if typing.get_origin(current) is list:
        inner = typing.get_args(current)[0]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return list(inner.model_fields)
    return []


def check_dataset(dataset: DatasetConfig) -> None:
    """Refuse a dataset that cannot be built (unknown world or option, a RecFlow dataset without
    a prepared cache) before any run starts."""
    if dataset.kind == "synthetic":
        from cascbench.datasets import world_config

        world_config(dataset)
        return
    from cascbench.datasets.cache import read_manifest

    if dataset.data_dir is None:
        raise CascbenchError(
            "this grid reads RecFlow, and no cache was given: prepare one with `cascbench data "
            "prepare recflow --src RECFLOW_DIR --setting SETTING --out CACHE`, then pass "
            "--data-dir CACHE."
        )
    read_manifest(dataset.data_dir)


def plan_experiment(experiment: ExperimentFile, source: str) -> list[RunConfig]:
    """Every run of the grid, resolved: methods × grid combinations × seeds. A method's grid keys
    multiply that method's runs only. Duplicates are kept (`grid.plan_runs` merges them)."""
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
                datasets.setdefault(config.dataset.model_dump_json(), (config.dataset, where))
                configs.append(config)
    for dataset, where in datasets.values():
        _checked(where, lambda d=dataset: check_dataset(d))
    return configs


def _split_grid(
    experiment: ExperimentFile, source: str
) -> tuple[dict[str, list[Any]], dict[str, dict[str, list[Any]]]]:
    """Grid keys checked and split: (shared keys -> values, method -> {parameter -> values})."""
    names = {v.name for v in experiment.methods}
    shared: dict[str, list[Any]] = {}
    per_method: dict[str, dict[str, list[Any]]] = {}
    for key, values in experiment.grid.items():
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
            valid = ["setting", "train.<field>", "dataset.<field>", "<method>.<parameter>"]
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
        "train": dict(base["train"]),
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
