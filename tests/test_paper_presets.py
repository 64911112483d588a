"""The paper's presets (REPRODUCE.md): each expands to the paper's experiment, in a synthetic and a
RecFlow variant, and one runs end to end on the tiny world."""

import pytest
from recflow_data import export_tiny
from typer.testing import CliRunner

from cascbench.cli import app
from cascbench.datasets.cache import prepare_recflow
from cascbench.experiment.configfile import (
    list_presets,
    preset_document,
    set_value,
    validate_experiment,
)
from cascbench.experiment.plan import plan_experiment

EIGHT = {"bce", "icc", "rankflow", "fs_ranknet", "fs_lambdaloss", "arf", "arf_v2", "lcron"}
#: preset -> (setting, number of runs, methods)
PAPER = {
    "paper-table2": ("recflow-2stage", 40, EIGHT),
    "paper-table6": ("recflow-3stage", 40, EIGHT),
    "paper-table3": ("recflow-2stage", 15, {"lcron"}),
    "paper-table4": ("recflow-2stage", 40, {"lcron"}),
    "paper-table7": ("recflow-2stage", 20, {"lcron", "neuralsort_ce", "softsort_ce"}),
    "paper-table8": ("recflow-2stage", 30, {"lcron"}),
    "paper-tables9-12": ("recflow-2stage", 160, EIGHT),
    "paper-appendix-e1": ("recflow-2stage", 10, {"lcron"}),
    "paper-figure2": ("recflow-2stage", 40, EIGHT),
    "paper-appendix-d": ("recflow-2stage", 8, EIGHT),
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("recflow")
    _, days = export_tiny(root / "src", short=False)
    prepare_recflow(root / "src", "recflow-2stage", days, root / "cache", sequence_length=10)
    return root / "cache"


def planned(name, **overrides):
    document = preset_document(name)
    for key, value in overrides.items():
        document = set_value(document, key, value)
    source = f"preset {name!r}"
    runs, _ = plan_experiment(validate_experiment(document, source), source)
    return [r.config for r in runs]


def test_every_paper_item_has_a_synthetic_and_a_recflow_preset():
    presets = set(list_presets())
    assert set(PAPER) <= presets
    assert {f"{name}-recflow" for name in PAPER} <= presets


@pytest.mark.parametrize("name", sorted(PAPER))
def test_a_synthetic_paper_preset_is_the_paper_experiment_on_recflow_like(name):
    setting, n_runs, methods = PAPER[name]
    configs = planned(name)
    assert len(configs) == n_runs
    assert {c.method for c in configs} == methods
    assert {c.setting for c in configs} == {setting}
    assert {(c.dataset.kind, c.dataset.world) for c in configs} == {("synthetic", "recflow-like")}
    assert {c.train.device for c in configs} == {"cpu"}  # the committed numbers come from a CPU


@pytest.mark.parametrize("name", sorted(PAPER))
def test_a_recflow_paper_preset_plans_the_same_runs_on_a_cache(name, cache):
    synthetic = planned(name)
    recflow = planned(f"{name}-recflow", **{"dataset.data_dir": str(cache)})
    assert {c.dataset.kind for c in recflow} == {"recflow"}

    def key(c):
        return (c.setting, c.method, tuple(sorted(c.method_params.items())), c.seed,
                c.train.lr, c.train.batch_size, c.train.split)  # fmt: skip

    assert sorted(map(key, recflow)) == sorted(map(key, synthetic))


def test_specific_paper_grids():
    tau = sorted({c.method_params["tau"] for c in planned("paper-table8")})
    assert tau == [1, 20, 50, 100, 200, 1000]
    weights = sorted({c.method_params["fixed_weight"] for c in planned("paper-table4")})
    assert weights == [0.01, 0.1, 0.5, 1, 2, 3, 4, 5]
    lr_bs = {(c.train.lr, c.train.batch_size) for c in planned("paper-tables9-12")}
    assert lr_bs == {(0.001, 512), (0.001, 2048), (0.02, 512), (0.02, 2048)}
    assert {c.train.split for c in planned("paper-figure2")} == {"streaming"}
    ablations = {(c.method_params["no_e2e"], c.method_params["no_single"])
                 for c in planned("paper-table3")}  # fmt: skip
    assert ablations == {(False, False), (True, False), (False, True)}


def test_a_recflow_preset_without_a_cache_says_how_to_prepare_one(tmp_path):
    result = CliRunner().invoke(
        app, ["run", "--preset", "paper-table2-recflow", "--results-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "cascbench data prepare recflow" in result.output and "--data-dir" in result.output


def test_a_paper_preset_runs_end_to_end_on_the_tiny_world(tmp_path):
    args = ["run", "--preset", "paper-table3", "--world", "tiny", "--seeds", "0",
            "--batch-size", "64", "--results-dir", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "runs").iterdir())) == 3
    report = CliRunner().invoke(app, ["report", "--results-dir", str(tmp_path), "--format", "csv"])
    assert report.exit_code == 0, report.output
    assert "lcron[no_e2e=True]" in report.output and "lcron[no_single=True]" in report.output
