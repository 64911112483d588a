"""Training throughput and memory per method, read from the run folders of a results directory.

python benchmarks/throughput.py results/demo
"""

from __future__ import annotations

import argparse

import pandas as pd

from cascbench.experiment.store import ResultStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", help="A folder written by `cascbench run`.")
    args = parser.parse_args()
    rows = [
        {"setting": run.config["setting"], "method": run.config["method"], **run.stats}
        for run in ResultStore(args.results_dir).finished_runs()
    ]
    frame = pd.DataFrame(rows)
    columns = ["train_requests_per_second", "train_seconds", "eval_seconds"]
    columns += [c for c in ("peak_rss_mb", "peak_gpu_mb") if c in frame]
    summary = frame.groupby(["setting", "device", "method"])[columns].mean().round(1)
    print(summary.to_string())


if __name__ == "__main__":
    main()
