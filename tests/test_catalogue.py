"""The method catalogue (cascbench/method_catalogue.json) answers run ids, labels and `list
methods` without torch exactly as the registry does."""

import json

import pytest

from cascbench import catalogue
from cascbench import method as method_module
from cascbench.errors import CascbenchError
from cascbench.experiment.config import RunConfig, TrainConfig
from cascbench.experiment.labels import run_label
from cascbench.method import MethodParams, get_method_class, list_methods, register_method
from cascbench.methods.bce import IndependentBCE
from cascbench.settings import list_settings


def test_the_catalogue_is_the_registrys():
    written = json.loads(catalogue.CATALOGUE_PATH.read_text())
    built = json.loads(json.dumps(catalogue.build_catalogue()))
    assert written == built, "the catalogue is stale: run `python -m cascbench.catalogue`"


def test_the_catalogue_lists_every_in_tree_method_and_every_setting_it_accepts():
    written = json.loads(catalogue.CATALOGUE_PATH.read_text())
    assert set(written) == {
        n for n, c in list_methods().items() if c.__module__.startswith("cascbench.methods.")
    }
    for entry in written.values():  # every in-tree method accepts every built-in setting
        assert set(entry["defaults"]) == set(list_settings())


@pytest.fixture
def without_registry(monkeypatch):
    """This process as `cascbench runs` sees it: the registry not loaded, the catalogue read."""
    monkeypatch.setattr(catalogue, "_registry_loaded", lambda: False)


def _configs() -> list[RunConfig]:
    configs = [
        RunConfig(setting=setting, method=method)
        for method in list_methods()
        for setting in list_settings()
        if catalogue.catalogued(setting, method)
    ]
    configs += [
        RunConfig(method="lcron", method_params={"tau": 20}, train=TrainConfig(lr=0.02), seed=3),
        RunConfig(setting="recflow-3stage", method="arf", method_params={"k": 5}),
        RunConfig(
            setting="synthetic-4stage", method="fs_ranknet", method_params={"masking": "clean"}
        ),
    ]
    return configs


def test_ids_and_labels_without_the_registry_are_the_registrys(without_registry):
    # Computed first with the registry (RunConfig.resolved imports it), then read back as the
    # store reads a config, with the registry out of the picture.
    for config in _configs():
        resolved = config.resolved()
        expected_id = resolved.run_id()
        stored = RunConfig.model_validate(resolved.model_dump(mode="json"))
        assert catalogue.catalogued(stored.setting, stored.method)
        assert stored.stored_run_id() == expected_id, config
        assert run_label(stored) == run_label(resolved), config


def test_the_registry_answers_once_it_is_loaded(monkeypatch):
    list_methods()
    assert catalogue._registry_loaded()
    monkeypatch.setattr(IndependentBCE, "version", "changed")  # the code's truth, not the file's
    assert catalogue.method_version("bce") == "changed"
    assert RunConfig(method="bce").resolved().stored_run_id() == RunConfig(method="bce").run_id()


class _PluginParams(MethodParams):
    alpha: float = 1.0


class _Plugin(IndependentBCE):
    Params = _PluginParams
    version = "7"
    max_stages = 2


def test_what_the_catalogue_does_not_list_is_the_registrys(monkeypatch):
    # A plug-in, registered for this test only.
    monkeypatch.setattr(method_module, "_REGISTRY", dict(method_module._REGISTRY))
    register_method("test_catalogue_plugin")(_Plugin)
    monkeypatch.setattr(catalogue, "_registry_loaded", lambda: False)
    plugin = RunConfig(method="test_catalogue_plugin").resolved()
    assert not catalogue.catalogued(plugin.setting, plugin.method)
    assert catalogue.method_version("test_catalogue_plugin") == "7"
    assert plugin.stored_run_id() == plugin.run_id()
    # A setting a method refuses is left out of its entry: the registry answers with its error.
    assert set(catalogue.describe_method(_Plugin)["defaults"]) == {
        name for name, setting in list_settings().items() if setting.n_stages <= 2
    }
    # A stored config whose hyper-parameters are not this version's fields is resolved by the
    # registry, which refuses the unknown one, as it did before the catalogue.
    stored = RunConfig(method="bce", method_params={"no_such_field": 1})
    with pytest.raises(CascbenchError, match="no_such_field"):
        stored.stored_run_id()


def test_list_methods_reads_the_catalogue_when_every_plugin_is_listed(without_registry):
    summaries = catalogue.method_summaries()
    assert summaries["lcron"]["summary"] == get_method_class("lcron").summary
    assert [f["name"] for f in summaries["lcron"]["fields"]] == list(
        get_method_class("lcron").Params.model_fields
    )
