"""Start-up: the command line and `import cascbench` do not import torch until it is needed."""

import subprocess
import sys

import pytest

import cascbench

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
    ],
)
def test_help_does_not_import_torch(args):
    assert not imports_torch(*args)


def test_the_check_sees_torch_when_a_command_imports_it():
    assert imports_torch("list", "methods")  # the method registry is torch modules


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
