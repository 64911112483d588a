"""Start-up: the command line and `import cascbench` do not import torch until it is needed."""

import itertools
import subprocess
import sys

import pytest
from grid_tasks import fake_record

import cascbench
from cascbench.experiment.config import RunConfig
from cascbench.experiment.store import ResultStore

#: Runs the console script's entry point with the given arguments in a fresh interpreter, then
#: prints whether torch was imported.
_CLI = """
import sys
from cascbench.cli import main
sys.argv = ["cascbench", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
print("torch imported:", "torch" in sys.modules)
"""


def imports_torch(*args: str) -> bool:
    result = subprocess.run(
        [sys.executable, "-c", _CLI, *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1] == "torch imported: True"


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, cascbench.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["list", "--help"],
        ["runs", "--help"],
        ["report", "--help"],
        ["run", "--help"],
        ["tune", "--help"],
        ["power", "--help"],
        ["list", "worlds"],
        ["list", "presets"],
        ["list", "settings"],
        ["list", "methods"],
        ["list", "methods", "--verbose"],
    ],
)
def test_help_does_not_import_torch(args):
    assert not imports_torch(*args)


def test_runs_and_report_read_a_store_without_torch(tmp_path):
    """Run ids are checked and labels written from the method catalogue, not the registry."""
    store = ResultStore(tmp_path)
    for method, seed in itertools.product(("bce", "lcron"), (0, 1)):
        config = RunConfig(method=method, method_params={"tau": 20} if method == "lcron" else {})
        resolved = config.model_copy(update={"seed": seed}).resolved()
        record = fake_record(0.5 + 0.1 * seed + (0.05 if method == "lcron" else 0.0))
        store.write_run(resolved.run_id(), resolved.model_dump(mode="json"), record)
    assert not imports_torch("runs", "--results-dir", str(tmp_path))
    assert not imports_torch("report", "--results-dir", str(tmp_path))
    assert len(list(ResultStore(tmp_path).finished_runs())) == 4  # none left out as stale
    records = str(tmp_path / "runs.jsonl")
    assert not imports_torch("runs", "--results-dir", str(tmp_path), "--export", records)
    copy = str(tmp_path / "copy")
    assert not imports_torch("runs", "--results-dir", copy, "--import", records)
    assert len(ResultStore(copy).finished_runs()) == 4


def test_the_check_sees_torch_when_a_command_imports_it(tmp_path):
    # Planning validates hyper-parameters with the method classes, which are torch modules.
    assert imports_torch("run", "--dry-run", "--methods", "bce", "--results-dir", str(tmp_path))


def test_every_public_name_is_exported_and_loads():
    assert set(cascbench.__all__) == {"__version__", *cascbench._PUBLIC}
    for name in cascbench._PUBLIC:
        assert getattr(cascbench, name).__name__ == name


def test_the_names_written_into_run_help_are_the_registries():
    from cascbench.cli.run import SETTING_NAMES, WORLD_NAMES
    from cascbench.datasets.synthetic import WORLD_PRESETS
    from cascbench.settings import list_settings

    assert tuple(list_settings()) == SETTING_NAMES
    assert tuple(WORLD_PRESETS) == WORLD_NAMES
