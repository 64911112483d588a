"""README shows what `make demo` prints: its table is generated from the recorded run
(scripts/demo_readme.py), never typed, and must equal the recorded report's first table."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def block(path: Path, marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\n(.*?)<!-- /{marker} -->", path.read_text(), re.S)
    assert match, f"{path.name} has no {marker} block"
    return match[1]


def test_the_readme_table_is_the_recorded_demo_reports_first_table():
    report = block(ROOT / "results" / "demo.md", "demo report")
    readme = block(ROOT / "README.md", "demo table")
    assert readme.strip() == report.split("\n\n")[1].strip()
    assert readme.startswith("| method | n | joint_recall")
