"""cascbench against the LCRON release, side by side: whole commands on the same RecFlow-format
data, alternated, with the median ratio (issue 16).

    python benchmarks/vs_release.py --release PATH --cache CACHE --days D1,D2 \\
        --release-command "python {release}/main.py --method {method} --data {data}" \\
        [--data RECFLOW_DIR] [--methods lcron,bce] [--repeats 3]

The release's code is not part of cascbench (CC BY-SA): give its folder with --release and the
command that trains and tests one method with it (placeholders {release}, {method}, {data});
without --release the script says so and exits 0. cascbench's command is `cascbench run` on a
prepared cache of the same data (`cascbench data prepare recflow --data-dir RECFLOW_DIR --out
CACHE`, done once: preparing is not timed), training on every day of --days but the last and
testing on the last, batch 1024, one pass. The two commands run alternately, `--repeats` times
each; each time is a fresh process's wall time, start-up included. Prints every time and, per
method, the median release time over the median cascbench time (above 1: cascbench is faster).
Run it with nothing else running, or with a known load (`--busy-core` keeps one core busy, the
issue's second target), and record the CPU model beside the numbers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cascbench.experiment.environment import cpu_model


def wall_seconds(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - started


def cascbench_command(method: str, cache: str, days: str, results: str) -> list[str]:
    return [
        sys.executable, "-m", "cascbench", "run", "--methods", method, "--seeds", "0",
        "--dataset", "recflow", "--data-dir", cache, "--days", days,
        "--results-dir", results, "--force", "--quiet",
    ]  # fmt: skip


def release_command(template: str, release: str, method: str, data: str) -> list[str]:
    return shlex.split(template.format(release=release, method=method, data=data))


def _spin() -> None:
    while True:
        pass


def compare(
    methods: list[str], repeats: int, ours: dict[str, list[str]], theirs: dict[str, list[str]]
) -> dict[str, float]:
    """Per method: the median of the release's times over the median of cascbench's, the two
    commands run alternately (ours first) `repeats` times each."""
    ratios = {}
    for method in methods:
        times: dict[str, list[float]] = {"cascbench": [], "release": []}
        for _ in range(repeats):
            times["cascbench"].append(wall_seconds(ours[method]))
            times["release"].append(wall_seconds(theirs[method]))
        ratios[method] = statistics.median(times["release"]) / statistics.median(times["cascbench"])
        print(
            f"| {method} | {' / '.join(f'{t:.1f}' for t in times['cascbench'])} | "
            f"{' / '.join(f'{t:.1f}' for t in times['release'])} | {ratios[method]:.2f}× |"
        )
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", help="the release's folder; without it, nothing runs")
    parser.add_argument("--release-command", help="its command; {release} {method} {data}")
    parser.add_argument("--data", default="", help="the RecFlow-format folder the release reads")
    parser.add_argument("--cache", help="the same data prepared by `cascbench data prepare`")
    parser.add_argument("--days", help="comma-separated: training days, then the test day")
    parser.add_argument("--methods", default="lcron,bce")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy-core", action="store_true", help="keep one core busy meanwhile")
    options = parser.parse_args()
    if not options.release:
        print("skipped: give the release's folder with --release (it is not part of cascbench)")
        return
    if not (options.release_command and options.cache and options.days):
        parser.error("--release needs --release-command, --cache and --days")
    if not Path(options.release).is_dir():
        parser.error(f"--release {options.release}: no such folder")
    methods = options.methods.split(",")
    print(f"{cpu_model()}, {os.cpu_count()} cores; "
          f"load average before: {os.getloadavg()[0]:.2f}")  # fmt: skip
    spinner = None
    if options.busy_core:
        spinner = multiprocessing.Process(target=_spin, daemon=True)
        spinner.start()
    try:
        with tempfile.TemporaryDirectory() as results:
            ours = {m: cascbench_command(m, options.cache, options.days, results) for m in methods}
            theirs = {
                m: release_command(options.release_command, options.release, m, options.data)
                for m in methods
            }
            print("| method | cascbench s | release s | release / cascbench (median) |")
            print("|---|---|---|---:|")
            compare(methods, options.repeats, ours, theirs)
    finally:
        if spinner is not None:
            spinner.terminate()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
