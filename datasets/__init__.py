"""Datasets: each turns its source into the canonical arrays (`cascbench.data.CascadeData`)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from cascbench.datasets.config import DatasetConfig
from cascbench.errors import CascbenchError, validate_fields

if TYPE_CHECKING:  # torch-free at import: `cascbench list worlds` reads the presets only
    from cascbench.data import Dataset
    from cascbench.datasets.synthetic import WorldConfig


def world_config(config: DatasetConfig) -> WorldConfig:
    """The synthetic world a dataset config asks for: its preset with `world_options` applied.

    Raises CascbenchError naming an unknown preset or option, or an invalid value.
    """
    from cascbench.datasets.synthetic import WorldConfig, get_world_config

    if config.kind != "synthetic":
        raise CascbenchError(f"dataset kind {config.kind!r} is not supported; use 'synthetic'.")
    preset = get_world_config(config.world)
    values = {**preset.model_dump(), **config.world_options}
    return validate_fields(f"world {config.world!r} with options", WorldConfig, values)


def check_dataset(config: DatasetConfig) -> None:
    """Refuse a dataset that cannot be built (unknown world or option, a RecFlow dataset without
    a prepared cache) before any run starts."""
    if config.kind == "synthetic":
        world_config(config)
        return
    from cascbench.datasets.cache import read_manifest

    if config.data_dir is None:
        raise CascbenchError(
            "this grid reads RecFlow, and no cache was given: prepare one with `cascbench data "
            "prepare recflow --src RECFLOW_DIR --setting SETTING --out CACHE`, then pass "
            "--data-dir CACHE."
        )
    read_manifest(config.data_dir)


def load_dataset(config: DatasetConfig, setting_name: str) -> Dataset:
    """The dataset of a run, laid out for the named setting.

    Synthetic worlds are generated, and RecFlow caches opened, once per process and reused by every
    run that asks for the same data (the seeds of a grid share one load). A RecFlow cache only
    serves settings with its groups; its chosen days open as a DayStack of memory maps, in order,
    the last one the test day.
    """
    key = config.model_dump_json()
    return _load_cached(key, setting_name)


@lru_cache(maxsize=4)
def _load_cached(config_json: str, setting_name: str) -> Dataset:
    from cascbench.settings import get_setting

    config = DatasetConfig.model_validate_json(config_json)
    if config.kind == "recflow":
        from cascbench.datasets.cache import open_cache

        if config.data_dir is None:
            raise CascbenchError(
                "a recflow dataset needs data_dir (--data-dir CACHE): the cache folder that "
                "`cascbench data prepare recflow` wrote."
            )
        return open_cache(config.data_dir, get_setting(setting_name), config.days)

    from cascbench.datasets.synthetic import generate_world

    return generate_world(get_setting(setting_name), world_config(config), seed=config.seed)
