"""A stricter check beside the report's test: the paired t-test on world means.

The report tests each pair of methods over its (world seed, training seed) pairs of runs, as if
the 30 pairs of a tuned table were independent. Training seeds of one world share that world, so
a claim about worlds like these rests on the worlds: this script averages each method's runs per
world seed and tests the differences of those means (n = world seeds, n − 1 degrees of freedom),
for every pair of rows, with Holm's correction across the pairs. With three worlds it has little
power: a difference it calls is consistent across the worlds; one it does not call may be real.

    cascbench runs --results-dir /tmp/t6 --import results/tuned/table6-large/runs.jsonl
    python scripts/world_level_tests.py --results-dir /tmp/t6 \
        > results/tuned/table6-large/world_level.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cascbench.experiment.store import ResultStore
from cascbench.report import stats
from cascbench.report.compare import paired_runs
from cascbench.report.findings import method_pairs
from cascbench.report.tables import SummaryTable, runs_frame, summarize

COLUMNS = ["pair", "worlds", "by_world", "mean_diff", "statistic", "p_value", "p_holm"]


def world_level_tests(table: SummaryTable, metric: str) -> pd.DataFrame:
    """One row per pair of rows (first − second, as the report's findings order them): the mean
    difference in each world seed both ran (float[worlds], `by_world`), their mean, and the paired
    t-test over the worlds (`COLUMNS`)."""
    records = []
    for first, second in method_pairs(table.variants):
        both = paired_runs(table, metric, first, second)
        means = both.T.groupby(level="world_seed").mean()
        test = stats.paired_t_test(means[first].to_numpy(), means[second].to_numpy())
        by_world = (means[first] - means[second]).to_numpy()
        records.append(
            {
                "pair": f"{first} − {second}",
                "worlds": test.n,
                "by_world": by_world,
                "mean_diff": float(by_world.mean()) if by_world.size else float("nan"),
                "statistic": test.statistic,
                "p_value": test.p_value,
            }
        )
    frame = pd.DataFrame(records, columns=COLUMNS[:-1])
    frame["p_holm"] = stats.holm(frame["p_value"].to_numpy()) if records else []
    return frame


def _p(value: float) -> str:
    return "n/a" if np.isnan(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def markdown(frame: pd.DataFrame, title: str, metric: str, alpha: float = 0.05) -> str:
    """The rows of `world_level_tests` as a Markdown table, the test stated below it."""
    lines = [
        f"**World-level tests on {metric}, {title}**",
        "",
        "| pair | worlds | Δ by world | Δ | t | p | p (Holm) | verdict |",
        "|:---|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for row in frame.itertuples():
        by_world = ", ".join(f"{d:+.4f}" for d in row.by_world)
        called = row.p_holm < alpha
        verdict = ("better" if row.mean_diff > 0 else "worse") if called else "not called"
        lines.append(
            f"| {row.pair} | {row.worlds} | {by_world} | {row.mean_diff:+.4f} | "
            f"{row.statistic:.2f} | {_p(row.p_value)} | {_p(row.p_holm)} | {verdict} |"
        )
    lines += [
        "",
        "Δ = first − second: each method's runs averaged per world seed, then the difference of "
        "those means; two-sided paired t-test over the world seeds (n = worlds, n − 1 degrees of "
        f"freedom), Holm's correction across the pairs, α = {alpha}. Not called: not significant "
        "at this level; with few worlds that is weak evidence of no difference.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, required=True, help="A results folder.")
    parser.add_argument("--metric", default="joint_recall", help="The metric compared.")
    args = parser.parse_args()
    runs = ResultStore(args.results_dir).finished_runs()
    for table in summarize(runs_frame(runs), [args.metric]):
        frame = world_level_tests(table, args.metric)
        sys.stdout.write(markdown(frame, table.title, args.metric))


if __name__ == "__main__":
    main()
