"""Bad values at the command line's edge are one-line errors that name the flag and the value
(issue 15): malformed KEY=VALUE values, a --src that is not a RecFlow folder, an --out that is a
file."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cascbench.cli import app

pytestmark = pytest.mark.faults

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "--set", "train.lr=[1,", "--dry-run"], "--set 'train.lr=[1,': the value '[1,'"),
        (["run", "--param", "lcron.tau={a", "--dry-run"], "--param 'lcron.tau={a': the value"),
        (["run", "--world-option", "days=]", "--dry-run"], "--world-option 'days=]'"),
    ],
)
def test_malformed_values_name_the_flag(args, fragment, tmp_path):
    result = runner.invoke(app, [*args, "--results-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert fragment in text and "Traceback" not in text


def test_a_src_that_is_empty_missing_or_a_file_is_named(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for src, fragment in [
        (empty, "holds no RecFlow day"),
        (tmp_path / "missing", "not found"),
        (a_file, "a file"),
    ]:
        result = runner.invoke(app, ["data", "check", "recflow", "--src", str(src)])
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and f"--src {src}" in text and fragment in text, text


def test_prepare_into_a_file_is_refused(tmp_path):
    from recflow_data import export_tiny

    _, days = export_tiny(tmp_path / "src", short=False)
    out = tmp_path / "cache.txt"
    out.write_text("not a folder")
    result = runner.invoke(
        app,
        ["data", "prepare", "recflow", "--src", str(tmp_path / "src"), "--days", days[0],
         "--sequence-length", "10", "--out", str(out)],
    )  # fmt: skip
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and f"--out {out} is a file" in text, text
