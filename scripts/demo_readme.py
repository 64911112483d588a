"""Write the recorded demo's report into results/demo.md and its main table into README.md.

    python scripts/demo_readme.py [--results-dir results/demo]

The demo (`make demo`) prints `cascbench report --results-dir results/demo`; this reruns that
report on the recorded runs in Markdown and replaces the text between the markers
`<!-- demo report -->` … `<!-- /demo report -->` in results/demo.md and `<!-- demo table -->` …
`<!-- /demo table -->` in README.md (the first table only), so that what the README shows is
generated from the run, never typed. tests/test_readme_demo.py checks that the two agree.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def replace_between(text: str, marker: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {marker} -->\n).*?(<!-- /{marker} -->)", re.S)
    if not pattern.search(text):
        sys.exit(f"no <!-- {marker} --> … <!-- /{marker} --> block to replace")
    return pattern.sub(lambda m: m[1] + body.rstrip("\n") + "\n" + m[2], text, count=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=ROOT / "results" / "demo")
    args = parser.parse_args()
    report = subprocess.run(
        [sys.executable, "-m", "cascbench", "report", "--results-dir", str(args.results_dir),
         "--format", "markdown"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    first_table = report.split("\n\n")[1]  # after the title line: the rows of the main table
    demo = ROOT / "results" / "demo.md"
    demo.write_text(replace_between(demo.read_text(), "demo report", report))
    readme = ROOT / "README.md"
    readme.write_text(replace_between(readme.read_text(), "demo table", first_table))


if __name__ == "__main__":
    main()
