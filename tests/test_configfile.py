"""Experiment files: validation with paths, --set, grid expansion, presets."""

import itertools
import re

import pytest

from cascbench.errors import CascbenchError
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.configfile import (
    ExperimentFile,
    list_presets,
    load_document,
    parse_seeds,
    preset_document,
    set_value,
    validate_experiment,
)
from cascbench.experiment.plan import plan_experiment

SOURCE = "config file grid.yaml"
TINY = {"world": "tiny"}


def plan_with_duplicates(document):
    """(planned runs, duplicates merged)."""
    return plan_experiment(validate_experiment(document, SOURCE), SOURCE)


def plan(document):
    """The resolved configs of the planned runs."""
    return [run.config for run in plan_with_duplicates(document)[0]]


def refused(document, *fragments):
    """The error of planning `document`; every fragment must be in it, after the source."""
    with pytest.raises(CascbenchError) as error:
        plan(document)
    message = str(error.value)
    assert message.startswith(SOURCE + ": "), message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize(
    ("document", "fragments"),
    [
        ({"methodz": ["bce"]}, ["methodz: unknown key; did you mean 'methods'?"]),
        ({"train": {"lrr": 0.1}}, ["train.lrr: unknown key; did you mean 'lr'?", "batch_size"]),
        ({"dataset": {"wrld": "tiny"}}, ["dataset.wrld: unknown key; did you mean 'world'?"]),
        ({"train": {"batch_size": "big"}}, ["train.batch_size: Input should be a valid integer"]),
        ({"train": {"lr": -1}}, ["train.lr: Input should be greater than 0 (got -1)"]),
        ({"methods": [{"lcron": {}, "bce": {}}]}, ["methods: entry 0", "one method"]),
        ({"methods": [{"lcron": 5}]}, ["methods[0].params: Input should be a valid dictionary"]),
        ({"methods": []}, ["methods: List should have at least 1 item"]),
        ({"grid": {"lcron.tau": []}}, ["grid: no values to try for 'lcron.tau'"]),
        ({"grid": {"lcron.tau": 5}}, ["grid.lcron.tau: Input should be a valid list"]),
        ({"seeds": "4-0"}, ["seeds: seeds '4-0': expected non-negative integers"]),
        ({"seeds": [0, -1]}, ["seeds[1]: Input should be greater than or equal to 0"]),
    ],
)
def test_invalid_files_name_the_key_and_what_is_expected(document, fragments):
    refused(document, *fragments)


@pytest.mark.parametrize(
    ("document", "fragments"),
    [
        ({"grid": {"lcron.taux": [1]}}, ["grid.lcron.taux", "Did you mean 'tau'?"]),
        ({"methods": [{"lcron": {"taux": 1}}]}, ["methods[0] (lcron)", "did you mean 'tau'?"]),
        ({"methods": ["lcorn"]}, ["methods[0]: Unknown method 'lcorn'. Did you mean 'lcron'?"]),
        ({"grid": {"lcron.tau": [20, -1]}}, ["with grid.lcron.tau=-1", "'tau'"]),
        ({"methods": ["bce"], "grid": {"lcron.tau": [1]}}, ["grid.lcron.tau: not a grid key"]),
        ({"grid": {"lcrn.tau": [1]}}, ["grid.lcrn.tau: not a grid key (did you mean 'lcron'?)"]),
        ({"grid": {"train.lrr": [1]}}, ["grid.train.lrr", "Did you mean 'lr'?"]),
        ({"grid": {"train.lr": [0.1, -1.0]}}, ["grid.train.lr=-1.0", "train.lr: Input should"]),
        ({"grid": {"setting": ["recflow-3stag"]}}, ["grid.setting: Unknown setting"]),
        ({"setting": "recflow-3stag"}, ["setting: Unknown setting", "'recflow-3stage'"]),
        ({"dataset": {"world": "tinyy"}}, ["Did you mean 'tiny'?"]),
        ({"grid": {"dataset.world_options.nosie_std": [1.0]}}, ["did you mean 'noise_std'?"]),
        ({"grid": {"seed": [1, 2]}}, ["grid.seed: not a grid key"]),
        (
            {"methods": [{"lcron": {"tau": 20}}], "grid": {"lcron.tau": [1, 2]}},
            ["grid.lcron.tau: methods[0] fixes lcron.tau"],
        ),
    ],
)
def test_grids_that_cannot_run_are_refused_before_anything_runs(document, fragments):
    refused({"dataset": TINY, **document}, *fragments)


def test_grid_expansion_is_the_product_and_method_keys_multiply_only_that_method():
    document = {
        "dataset": TINY,
        "methods": ["lcron", "bce", {"lcron": {"no_e2e": True}}],
        "seeds": [0, 1],
        "grid": {"lcron.tau": [20, 100], "train.lr": [0.01, 0.02]},
    }
    configs = plan(document)
    got = sorted(
        (c.method, c.method_params.get("no_e2e"), c.method_params.get("tau"), c.train.lr, c.seed)
        for c in configs
    )
    lcron = itertools.product(["lcron"], [False, True], [20.0, 100.0], [0.01, 0.02], [0, 1])
    bce = itertools.product(["bce"], [None], [None], [0.01, 0.02], [0, 1])
    assert got == sorted([*lcron, *bce])
    runs, duplicates = plan_with_duplicates(document)
    assert len(runs) == 20 and duplicates == 0


def test_dataset_world_options_and_settings_can_be_swept():
    configs = plan(
        {
            "dataset": TINY,
            "methods": ["bce"],
            "seeds": 0,
            "grid": {
                "setting": ["recflow-2stage", "recflow-3stage"],
                "dataset.world_options.noise_std": [0.5, 1.0],
            },
        }
    )
    assert sorted((c.setting, c.dataset.world_options["noise_std"]) for c in configs) == [
        ("recflow-2stage", 0.5),
        ("recflow-2stage", 1.0),
        ("recflow-3stage", 0.5),
        ("recflow-3stage", 1.0),
    ]


def test_the_same_run_spelled_twice_is_planned_once():
    document = {"dataset": TINY, "methods": ["lcron", {"lcron": {"tau": 50}}], "seeds": "0-1"}
    runs, duplicates = plan_with_duplicates(document)
    assert len(runs) == 2 and duplicates == 2


def test_set_value_reaches_nested_keys_and_grid_keys_with_dots():
    document = {"train": {"lr": 0.1}, "grid": {}}
    changed = set_value(document, "train.batch_size", 64)
    changed = set_value(changed, "grid.lcron.tau", [1, 2])
    changed = set_value(changed, "dataset.world_options.noise_std", 1.0)
    assert changed == {
        "train": {"lr": 0.1, "batch_size": 64},
        "grid": {"lcron.tau": [1, 2]},
        "dataset": {"world_options": {"noise_std": 1.0}},
    }
    assert document == {"train": {"lr": 0.1}, "grid": {}}  # a copy: the original is unchanged
    with pytest.raises(CascbenchError, match=r"train\.lr holds a value \(0\.1\)"):
        set_value(document, "train.lr.x", 1)
    with pytest.raises(CascbenchError, match="dotted key"):
        set_value(document, "train..lr", 1)


def test_documents_that_are_not_mappings_or_not_yaml_name_the_file(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("- lcron\n- bce\n")
    with pytest.raises(CascbenchError, match=r"grid.yaml: expected a mapping of keys"):
        load_document(path)
    path.write_text("methods: [lcron\n")
    with pytest.raises(CascbenchError, match=r"grid.yaml is not valid YAML"):
        load_document(path)
    with pytest.raises(CascbenchError, match=r"cannot read the config file .*missing.yaml"):
        load_document(tmp_path / "missing.yaml")
    path.write_text("")
    assert load_document(path) == {}


def test_every_preset_is_valid_and_the_demo_preset_is_make_demo():
    presets = list_presets()
    assert {"demo", "tiny-sweep"} <= set(presets) and all(presets.values())
    for name in presets:
        if name.endswith("-recflow"):
            continue  # they need a prepared cache: tests/test_paper_presets.py
        source = f"preset {name!r}"
        plan_experiment(validate_experiment(preset_document(name), source), source)
    demo, _ = plan_experiment(validate_experiment(preset_document("demo"), "demo"), "demo")
    make_demo = [  # the flags that recorded results/demo.md
        RunConfig(
            setting="recflow-2stage",
            dataset=DatasetConfig(world="small"),
            method=method,
            train=TrainConfig(device="cpu"),
            seed=seed,
        )
        for method in ["lcron", "rankflow", "bce"]
        for seed in parse_seeds("0-2")
    ]
    assert [r.run_id for r in demo] == [c.run_id() for c in make_demo]
    sweep, _ = plan_experiment(validate_experiment(preset_document("tiny-sweep"), "s"), "s")
    assert len(sweep) == 18
    assert {r.config.dataset.world for r in sweep} == {"tiny"}
    assert {(r.config.method, r.config.train.lr) for r in sweep} == set(
        itertools.product(["lcron", "rankflow", "bce"], [0.01, 0.02])
    )


def test_unknown_preset_suggests_a_name():
    with pytest.raises(CascbenchError, match="Did you mean 'demo'"):
        preset_document("demoo")


def test_world_seeds_multiply_the_runs_and_pair_with_the_training_seeds():
    runs = plan({"methods": ["bce"], "seeds": "0-1", "world_seeds": "3-5"})
    assert sorted((r.dataset.seed, r.seed) for r in runs) == [
        (w, s) for w in (3, 4, 5) for s in (0, 1)
    ]
    refused(
        {"world_seeds": [0, 1], "grid": {"dataset.seed": [2]}},
        "world_seeds and grid.dataset.seed both set the world seeds",
    )


def test_a_method_entry_carries_its_own_training_fields():
    document = {"methods": [{"bce": {"train": {"lr": 0.02}}}, {"lcron": {"tau": 20}}], "seeds": 0}
    runs = {r.method: r for r in plan(document)}
    assert runs["bce"].train.lr == 0.02 and runs["lcron"].train.lr == 0.01
    assert runs["lcron"].method_params["tau"] == 20
    refused(
        {**document, "grid": {"train.lr": [0.1, 0.2]}},
        "methods[0] fixes train.lr for its method",
    )
    refused({"methods": [{"bce": {"train": {"lrr": 1}}}]}, "lrr")


def test_method_entries_read_back_from_their_yaml_form():
    for entry in ["bce", {"lcron": {"tau": 20.0}}, {"lcron": {"tau": 5.0, "train": {"lr": 0.02}}}]:
        variant = ExperimentFile.model_validate({"methods": [entry]}).methods[0]
        assert variant.as_entry() == entry


def test_a_key_given_twice_is_refused_not_silently_overwritten(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("train:\n  lr: 0.01\n  lr: 0.02\n")
    with pytest.raises(CascbenchError, match=r"grid.yaml is not valid YAML.*'lr' is given twice"):
        load_document(path)


def test_a_config_file_that_is_not_text_names_the_file(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_bytes(b"setting: \xff\xfe binary")
    with pytest.raises(CascbenchError, match=r"grid.yaml is not UTF-8 text"):
        load_document(path)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"train": {"lr": float("inf")}}, "train.lr"),
        ({"train": {"lr": float("nan")}}, "train.lr"),
        ({"seeds": [2**64]}, "seeds[0]"),
        ({"world_seeds": [2**63]}, "world_seeds[0]"),
        ({"dataset": {"seed": -1}}, "dataset.seed"),
    ],
)
def test_non_finite_numbers_and_seeds_beyond_64_bits_are_refused(document, fragment):
    with pytest.raises(CascbenchError, match=re.escape(fragment)):
        validate_experiment(document, SOURCE)


def test_a_non_finite_method_parameter_is_refused_at_planning():
    refused({"methods": [{"lcron": {"tau": float("inf")}}]}, "tau", "finite")
