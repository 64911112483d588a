"""Start-up: the command line and `import cascbench` do not import torch until it is needed."""

import subprocess
import sys

import cascbench


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, cascbench.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_every_public_name_is_exported_and_loads():
    assert set(cascbench.__all__) == {"__version__", *cascbench._PUBLIC}
    for name in cascbench._PUBLIC:
        assert getattr(cascbench, name).__name__ == name
