"""The table of docs/models.md from the runs of `scripts/reference_models.sh`: joint recall of
the reference mode and of each clean option, per method, with the difference from the reference
(paired by seed, two-sided paired t-test; with 3 seeds only large differences can show). The
reference row is over every seed it has; each difference over the seeds both rows have.

    python scripts/reference_models_table.py /tmp/reference-models/runs > table.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from cascbench.experiment.store import ResultStore
from cascbench.models.config import CLEAN_MODEL

METHODS = ("lcron", "rankflow", "bce")
CLEAN = {**{f"model.{k}": v for k, v in CLEAN_MODEL.items()}, "train.drop_last": False}


def variant(config: dict) -> str:
    """ "reference", one changed option ("model.padding=trained"), or "all-clean"."""
    values = {f"model.{k}": v for k, v in config["model"].items()}
    values["train.drop_last"] = config["train"].get("drop_last", True)
    changed = [f"{k}={v}" for k, v in values.items() if v != _reference(k)]
    if not changed:
        return "reference"
    return "all-clean" if len(changed) == len(CLEAN) else ", ".join(changed)


def _reference(key: str) -> object:
    from cascbench.models.config import ModelConfig

    if key == "train.drop_last":
        return True
    return ModelConfig().model_dump()[key.removeprefix("model.")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="the results folder of reference_models.sh")
    args = parser.parse_args()
    rows = [
        {
            "variant": variant(run.config),
            "method": run.config["method"],
            "seed": run.config["seed"],
            "joint_recall": run.metrics["joint_recall"],
        }
        for run in ResultStore(args.runs).finished_runs()
    ]
    frame = pd.DataFrame(rows).pivot_table(
        index=["variant", "method"], columns="seed", values="joint_recall"
    )
    variants = ["reference", *sorted(set(frame.index.get_level_values(0)) - {"reference"})]
    print("| variant | " + " | ".join(METHODS) + " |")
    print("|---|" + "---|" * len(METHODS))
    for name in variants:
        cells = []
        for method in METHODS:
            row = frame.loc[(name, method)].dropna()
            values = row.to_numpy()
            cell = f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"
            if name != "reference":
                reference = frame.loc[("reference", method)][row.index].to_numpy()  # same seeds
                diff = values - reference
                p = stats.ttest_rel(values, reference).pvalue
                p_text = "identical" if np.all(diff == 0) else f"p = {p:.3f}"
                cell += f" ({diff.mean():+.4f}, {p_text})"
            cells.append(cell)
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
