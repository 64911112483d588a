"""Ceilings of a synthetic world: how well a perfect scorer does against the logged labels.

On the test day (the world's last), every stage of the setting's cascade is given the same
noise-free score, and the evaluator (`cascbench.evaluate`, clean protocol, the training loop's
tie-breaking seed) scores it against the logged ground truth, as it scores a trained cascade:

- visible signal: the part of the utility that the features determine, everything a stage model
  could in principle learn (the ceiling of a perfect learner);
- logged signal: the visible signal plus the hidden effect (`hidden_weight`), what the logged funnel
  scored before each stage's own noise (1.0 but for that noise);
- true utility: what users want, utility noise included;
- with --results, the best method of a committed results table (its `table.csv`) on the same
  setting and world.

    python scripts/world_ceilings.py --world recflow-like --setting recflow-2stage \
        --results results/paper-synthetic/table2
    python scripts/world_ceilings.py --world recflow-like --set hidden_weight=0.5
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import yaml

import cascbench as cb
from cascbench.datasets import world_config
from cascbench.datasets.config import DatasetConfig
from cascbench.datasets.synthetic import generate_world_with_signals
from cascbench.train_config import TrainConfig

SCORERS = {"visible": "visible signal", "logged": "logged signal", "utility": "true utility"}


def ceilings(world: str, options: dict, setting_name: str, seed: int) -> dict[str, dict]:
    """{scorer: evaluator means} on the test day, for each signal of SCORERS."""
    setting = cb.get_setting(setting_name)
    config = world_config(DatasetConfig(world=world, world_options=options, seed=seed))
    data, signals = generate_world_with_signals(setting, config, seed)
    test = data.rows_of_days([data.days()[-1]])
    targets = data.targets(test)
    stages = len(setting.stage_names)
    eval_seed = TrainConfig().eval_seed
    return {
        name: cb.evaluate(
            signals[name][test].expand(stages, -1, -1), targets, setting, seed=eval_seed
        ).means
        for name in SCORERS
    }


def best_committed(results: Path, setting_name: str, world: str) -> tuple[str, float, float]:
    """(method, joint recall, ranking recall) of the best joint recall in results/table.csv."""
    with (results / "table.csv").open() as stream:
        rows = [
            r
            for r in csv.DictReader(stream)
            if r["setting"] == setting_name and r["dataset"] == f"synthetic:{world}"
        ]
    joint = {r["method"]: float(r["mean"]) for r in rows if r["metric"] == "joint_recall"}
    ranking = {r["method"]: float(r["mean"]) for r in rows if r["metric"] == "recall/ranking"}
    if not joint:
        raise SystemExit(f"{results / 'table.csv'} has no {setting_name} row on {world!r}.")
    method = max(joint, key=joint.__getitem__)
    return method, joint[method], ranking.get(method, float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="recflow-like", help="World preset.")
    parser.add_argument("--set", action="append", default=[], help="KNOB=VALUE (repeatable).")
    parser.add_argument("--setting", default="recflow-2stage")
    parser.add_argument("--seed", type=int, default=0, help="World seed.")
    parser.add_argument(
        "--results", type=Path, help="A committed results folder with a table.csv to compare."
    )
    args = parser.parse_args()

    options = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    means = ceilings(args.world, options, args.setting, args.seed)
    stage_names = cb.get_setting(args.setting).stage_names
    columns = ["joint_recall", *(f"recall/{s}" for s in reversed(stage_names))]
    columns.append("oracle/joint_recall")
    knobs = f" {options}" if options else ""
    print(f"{args.setting} on {args.world}{knobs} (world seed {args.seed}), test day")
    print("| scorer | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, label in SCORERS.items():
        print(f"| {label} | " + " | ".join(f"{means[name][c]:.4f}" for c in columns) + " |")
    if args.results:
        method, joint, ranking = best_committed(args.results, args.setting, args.world)
        rest = " | ".join(["–"] * (len(columns) - 2))
        label = f"best committed: {method} ({args.results})"
        print(f"| {label} | {joint:.4f} | {ranking:.4f} | {rest} |")


if __name__ == "__main__":
    main()
