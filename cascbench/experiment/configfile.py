"""Experiment files: a grid of runs described once in YAML, validated before anything runs.

```yaml
description: what this grid is for
setting: recflow-2stage
dataset: {kind: synthetic, world: tiny, world_options: {noise_std: 0.5}, seed: 0}
methods: [lcron, rankflow, {lcron: {no_e2e: true}}]    # names, or {name: {parameter: value}}
                                                       # ({bce: {train: {lr: 0.02}}}: that
                                                       # method's own training fields)
train: {lr: 0.01, batch_size: 256, device: cpu, eval_protocol: clean}   # evaluation options too
model: {embedding_init: small}                         # stage-model options (docs/models.md)
seeds: 0-2                                             # or [0, 1, 2], or 3
world_seeds: 0-2                                       # worlds (dataset.seed) × seeds, paired
grid:                                                  # every combination of these values
  lcron.tau: [1, 20, 50]                               # a method's parameter: its runs only
  train.lr: [0.01, 0.001]                              # any training or evaluation field
  model.sequence_pooling: [sum, masked_mean]           # any stage-model option
  dataset.world_options.noise_std: [0.5, 1.0]          # any dataset field or world option
  setting: [recflow-2stage, recflow-3stage]
tune:                                                  # `cascbench tune` only (see tune.py)
  trials: 20                                           # per method, the same for every one
  seeds: [0]                                           # training seeds averaged per trial
  metric: joint_recall                                 # on the validation day
  search_space:                                        # overrides of the declared ranges
    train.lr: {low: 0.001, high: 0.05, log: true}
    lcron.tau: {low: 1, high: 100, log: true}
    train.batch_size: null                             # null: do not tune it
```

Every section is optional (the defaults are `cascbench run`'s). `--set key=value` overrides any
key (`--set train.lr=0.02`, `--set grid.lcron.tau=[1,20]`, `--set seeds=0-4`), and the command's
flags override both. Errors name the source, the key's path and what is valid. Packaged presets
live in cascbench/presets (`cascbench list presets`).
"""

from __future__ import annotations

import copy
import re
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cascbench.errors import CascbenchError, closest, unknown_name_error
from cascbench.experiment.config import MAX_SEED, DatasetConfig, ModelConfig, TrainConfig

DEFAULT_METHODS = ("lcron", "rankflow", "bce")


def parse_seeds(text: str) -> list[int]:
    """ "0-4" -> [0, 1, 2, 3, 4]; "0,2,7" -> [0, 2, 7]; ranges and lists may be mixed."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None or (match[2] is not None and int(match[2]) < int(match[1])):
            raise CascbenchError(
                f"seeds {text!r}: expected non-negative integers and ranges like '0-4' or '0,2,7'."
            )
        low = int(match[1])
        seeds.extend(range(low, int(match[2] or low) + 1))
    return list(dict.fromkeys(seeds))


def seed_list(value: Any) -> Any:
    """ "0-4" -> [0, ..., 4], 3 -> [3]; anything else as given, for pydantic to check (a bad
    string's CascbenchError is a ValueError, which pydantic reports with the key's path)."""
    if isinstance(value, str):
        return parse_seeds(value)
    return [value] if isinstance(value, int) else value


class MethodVariant(BaseModel):
    """One entry of `methods:`: a method, the hyper-parameters it runs with, and training fields
    of its own (a tuned method's learning rate) over the experiment's `train`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)

    def as_entry(self) -> str | dict[str, Any]:
        """The YAML form `methods:` reads back: "lcron" or {lcron: {tau: 20, train: {...}}}."""
        if not self.params and not self.train:
            return self.name
        return {self.name: {**self.params, **({"train": self.train} if self.train else {})}}


class TuneSpec(BaseModel):
    """The `tune:` section: the budget and objective of `cascbench tune` (the same for every
    method), and overrides of the declared search spaces."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trials: int = Field(20, ge=1, description="Trials per method (the same for every method).")
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] = Field(
        default=[0], min_length=1, description="Training seeds of each trial, averaged."
    )
    metric: str = Field("joint_recall", description="The validation metric to maximise.")
    sampler_seed: int = Field(0, ge=0, description="Seed of the TPE sampler.")
    search_space: dict[str, Any] = Field(
        default_factory=dict,
        description="KEY: range overrides; train.<field> for every method, <method>.<param> for "
        "one; null removes a dimension.",
    )

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_list(cls, value: Any) -> Any:
        return seed_list(value)


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
    model: ModelConfig = Field(default_factory=ModelConfig)
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] = Field(default=[0, 1, 2], min_length=1)
    world_seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] | None = Field(
        default=None, min_length=1
    )
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    tune: TuneSpec = Field(default_factory=TuneSpec)

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
                params = {} if params is None else params
                if isinstance(params, dict) and "train" in params:
                    params = dict(params)
                    entries.append({"name": name, "train": params.pop("train"), "params": params})
                else:
                    entries.append({"name": name, "params": params})
            else:
                raise ValueError(
                    f"entry {index} ({entry!r}) must be a method name or a mapping "
                    f"{{name: {{parameter: value}}}} with one method"
                )
        return entries

    @field_validator("seeds", "world_seeds", mode="before")
    @classmethod
    def _seed_list(cls, value: Any) -> Any:
        return seed_list(value)

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
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CascbenchError(f"cannot read the config file {path}: {exc.strerror}.") from None
    except UnicodeDecodeError as exc:
        raise CascbenchError(
            f"the config file {path} is not UTF-8 text (byte {exc.start}): is it a YAML file?"
        ) from None
    return _parse_document(text, f"config file {path}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _parse_document(text: str, source: str) -> dict[str, Any]:
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)
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
    under grid and tune.search_space the rest of the key is one key ("grid.lcron.tau")."""
    parts = key.split(".")
    if not all(parts):
        raise CascbenchError(f"--set {key!r}: expected a dotted key such as train.lr.")
    if parts[0] == "grid" and len(parts) > 1:
        parts = ["grid", ".".join(parts[1:])]
    if parts[:2] == ["tune", "search_space"] and len(parts) > 2:
        parts = ["tune", "search_space", ".".join(parts[2:])]
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
