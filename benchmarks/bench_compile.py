"""Eager against compiled (`train.compile`) on whole `cascbench run` commands, for deciding when
compilation repays its start-up (issue 16: short tuning trials against long paper runs).

    python benchmarks/bench_compile.py [--methods bce,lcron] [--requests 4096,24576]

Each command is `cascbench run` in a fresh process (imports, world generation, model building,
compilation, training, evaluation and writing included) on the `recflow-scale` world's shapes
and id tables (a million videos) cut to two days of R requests (one to train on, one to test),
batch 1024, torch's default threads; run it with nothing else running. Compiled runs reuse
Inductor's on-disk cache of compiled graphs (as the runs of a grid do): each method and mode first
runs once untimed at the small size, and that first run's time (a cold cache, on a fresh machine)
is printed apart. Prints the wall time of each command, then per method and mode a fixed cost and
a cost per request (of the training and the test day) fitted through the two sizes, and the day
size above which compiling pays.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def wall_seconds(method: str, requests: int, compile: bool, results: str) -> float:
    command = [
        sys.executable, "-m", "cascbench", "run", "--methods", method, "--seeds", "0",
        "--world", "recflow-scale",
        "--world-option", "days=2", "--world-option", f"requests_per_day={requests}",
        "--results-dir", results, "--quiet", "--force",
        "--set", f"train.compile={str(compile).lower()}",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="bce,lcron")
    parser.add_argument("--requests", default="4096,49152", help="two training-day sizes")
    options = parser.parse_args()
    small, large = (int(r) for r in options.requests.split(","))
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"| method | mode | R = {small:,} s | R = {large:,} s | fixed s | ms per request |")
    print("|---|---|---:|---:|---:|---:|")
    fits = {}
    with tempfile.TemporaryDirectory() as results:
        for method in options.methods.split(","):
            for compile in (False, True):
                first = wall_seconds(method, small, compile, results)
                times = [wall_seconds(method, r, compile, results) for r in (small, large)]
                per_request = (times[1] - times[0]) / (large - small)
                fixed = times[0] - per_request * small
                fits[method, compile] = (fixed, per_request)
                mode = "compiled" if compile else "eager"
                print(f"| {method} | {mode} | {first:.1f} | {times[0]:.1f} | {times[1]:.1f} | {fixed:.1f} | "
                      f"{1000 * per_request:.2f} |")  # fmt: skip
    for method in options.methods.split(","):
        (fixed_e, rate_e), (fixed_c, rate_c) = fits[method, False], fits[method, True]
        if rate_c < rate_e:
            even = (fixed_c - fixed_e) / (rate_e - rate_c)
            print(f"{method}: compiling pays above about {even:,.0f} requests per run "
                  "(training and test together)")  # fmt: skip
        else:
            print(f"{method}: compiled requests are not cheaper here; eager always wins")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
