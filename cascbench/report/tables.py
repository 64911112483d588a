"""Mean ± std over seeds per (setting, dataset, method variant), in the paper's column order."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from cascbench.errors import CascbenchError, unknown_name_error
from cascbench.experiment.config import EXECUTION_ONLY_TRAIN_FIELDS, RunConfig, TrainConfig
from cascbench.experiment.store import StoredRun
from cascbench.settings import get_setting

_TRAIN_DEFAULTS = TrainConfig().model_dump(mode="json")


@dataclass(frozen=True)
class SummaryTable:
    """One table: rows are method variants, columns metrics; mean, std (ddof 1) and n per cell.

    common: the training fields every run of the table shares that differ from the defaults.
    """

    setting: str
    dataset: str
    mean: pd.DataFrame
    std: pd.DataFrame
    n: pd.DataFrame
    common: str = ""

    @property
    def title(self) -> str:
        return f"{self.setting} on {self.dataset}" + (f" ({self.common})" if self.common else "")


def _method_changes(config: dict) -> list[str]:
    """The method's hyper-parameters that differ from their (setting-resolved) defaults."""
    default = RunConfig(setting=config["setting"], method=config["method"]).resolved()
    return [
        f"{key}={value}"
        for key, value in config["method_params"].items()
        if default.method_params.get(key) != value
    ]


def dataset_label(config: dict) -> str:
    dataset = config["dataset"]
    label = f"{dataset['kind']}:{dataset['world']}"
    if dataset.get("world_options"):
        options = ", ".join(f"{k}={v}" for k, v in sorted(dataset["world_options"].items()))
        label += f"[{options}]"
    return label + (f"@{dataset['seed']}" if dataset.get("seed") else "")


def runs_frame(runs: list[StoredRun]) -> pd.DataFrame:
    """One row per run: setting, dataset, method, its changed hyper-parameters, every training
    field ("train.<name>"), seed, run_id, then every metric."""
    if not runs:
        raise CascbenchError("the results folder holds no finished run.")
    rows = []
    for run in runs:
        train = {
            f"train.{k}": v
            for k, v in run.config["train"].items()
            if k not in EXECUTION_ONLY_TRAIN_FIELDS
        }
        rows.append(
            {
                "setting": run.config["setting"],
                "dataset": dataset_label(run.config),
                "method": run.config["method"],
                "method_changes": ", ".join(_method_changes(run.config)),
                **train,
                "seed": run.config["seed"],
                "run_id": run.run_id,
                **run.metrics,
            }
        )
    return pd.DataFrame(rows)


def _variants(group: pd.DataFrame) -> tuple[pd.Series, str]:
    """Row labels (method plus what distinguishes it) and the table's common non-default fields."""
    train_columns = [c for c in group.columns if c.startswith("train.")]
    varying = [c for c in train_columns if group[c].nunique(dropna=False) > 1]
    common = [
        f"{c.removeprefix('train.')}={group[c].iloc[0]}"
        for c in train_columns
        if c not in varying and group[c].iloc[0] != _TRAIN_DEFAULTS[c.removeprefix("train.")]
    ]

    def label(row: pd.Series) -> str:
        changes = [row["method_changes"]] if row["method_changes"] else []
        changes += [f"{c.removeprefix('train.')}={row[c]}" for c in varying]
        return row["method"] + (f"[{', '.join(changes)}]" if changes else "")

    return group.apply(label, axis=1), ", ".join(common)


def paper_columns(setting_name: str) -> list[str]:
    """joint_recall, then each stage's recall and NDCG, last stage first (the paper's order)."""
    stages = reversed(get_setting(setting_name).stage_names)
    return ["joint_recall"] + [f"{m}/{s}" for s in stages for m in ("recall", "ndcg")]


def summarize(frame: pd.DataFrame, metrics: list[str] | None = None) -> list[SummaryTable]:
    """Tables of mean ± std over seeds, one per (setting, dataset).

    metrics: the columns to show; None = the paper's columns (plus the oracle joint recall where
    the dataset knows the true utility); ["all"] = every metric recorded.
    """
    tables = []
    for (setting, dataset), group in frame.groupby(["setting", "dataset"], sort=True):
        recorded = [c for c in group.columns if "/" in c or c == "joint_recall"]
        recorded = [c for c in recorded if group[c].notna().any()]
        if metrics is None:
            columns = paper_columns(setting)
            columns += [c for c in ("oracle/joint_recall",) if c in recorded]
        elif metrics == ["all"]:
            columns = recorded
        else:
            for name in metrics:
                if name not in recorded:
                    raise unknown_name_error("metric", name, recorded)
            columns = metrics
        labels, common = _variants(group)
        by_variant = group.assign(variant=labels).groupby("variant", sort=True)[columns]
        tables.append(
            SummaryTable(
                setting,
                dataset,
                by_variant.mean(),
                by_variant.std(ddof=1),
                by_variant.count(),
                common,
            )
        )
    return tables


def format_cell(mean: float, std: float, digits: int = 4) -> str:
    """ "0.8732 ± 0.0005"; the std is "n/a" with a single seed."""
    spread = "n/a" if math.isnan(std) else f"{std:.{digits}f}"
    return f"{mean:.{digits}f} ± {spread}"


def to_markdown(table: SummaryTable) -> str:
    """A Markdown table of `table` with the number of seeds per row."""
    columns = list(table.mean.columns)
    lines = [
        f"**{table.title}**",
        "",
        "| method | n | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for variant in table.mean.index:
        cells = [format_cell(table.mean.at[variant, c], table.std.at[variant, c]) for c in columns]
        n = int(table.n.loc[variant].max())
        lines.append(f"| {variant} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_long_csv(tables: list[SummaryTable]) -> pd.DataFrame:
    """Every cell of every table as one row: setting, dataset, method, metric, mean, std, n."""
    rows = []
    for table in tables:
        for variant in table.mean.index:
            for column in table.mean.columns:
                rows.append(
                    {
                        "setting": table.setting,
                        "dataset": table.dataset,
                        "method": variant,
                        "metric": column,
                        "mean": table.mean.at[variant, column],
                        "std": table.std.at[variant, column],
                        "n": int(table.n.at[variant, column]),
                    }
                )
    return pd.DataFrame(rows)
