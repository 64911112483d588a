"""Start-up time of the command line: wall time of a few commands, each in a fresh process.

    python benchmarks/bench_startup.py [--repeats 5] [--results-dir DIR]

Prints one Markdown row per command: min and median wall seconds over the repeats, and whether
the command imported torch (checked in one more run under `python -X importtime`, with the
seconds its import took). Run it from outside the repository's root (e.g. `cd /tmp && python
/path/to/benchmarks/bench_startup.py`) so that the installed package, not the folder, is timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = [
    ["--help"],
    ["run", "--help"],
    ["list", "presets"],
    ["list", "worlds"],
    ["list", "methods"],
    ["runs"],
    ["report"],
]


def wall_seconds(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cascbench", *args], capture_output=True, check=False)
    return time.perf_counter() - started


def torch_import_seconds(args: list[str]) -> float | None:
    """The cumulative import time of torch under -X importtime, None when it is not imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cascbench", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in result.stderr.splitlines():
        fields = [f.strip() for f in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] == "torch":
            return int(fields[1]) / 1e6
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results-dir", help="for runs and report; default: an empty folder")
    options = parser.parse_args()
    folder = options.results_dir or tempfile.mkdtemp(prefix="cascbench-startup-")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| command | min s | median s | torch imported (its import, s) |")
    print("|---|---:|---:|---|")
    for args in COMMANDS:
        if args[0] in ("runs", "report"):
            args = [*args, "--results-dir", folder]
        times = [wall_seconds(args) for _ in range(options.repeats)]
        torch_seconds = torch_import_seconds(args)
        torch_text = "no" if torch_seconds is None else f"yes ({torch_seconds:.2f})"
        shown = " ".join(a if a != folder else "DIR" for a in args)
        print(
            f"| `cascbench {shown}` | {min(times):.2f} | {statistics.median(times):.2f} | "
            f"{torch_text} |"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
