"""Mean ± std over replicates per method variant, one table per (setting, dataset, training config).

The runs of a results folder become one frame (`runs_frame`), one row per run; `summarize` groups
it into `SummaryTable`s. A replicate is a (world seed, training seed) pair: runs on several seeds of
one synthetic world share a table and are paired by both seeds. Training fields that vary within a
method variant (a learning-rate × batch-size grid, as the paper's Tables 9–12) split the tables, so
that each table compares methods trained alike; method hyper-parameters that vary make rows
("lcron[tau=20.0]"), and so do training fields set per variant (a tuned table, each method at its
own best learning rate: "lcron[tau=12.3; lr=0.0123, batch_size=512]").
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import pandas as pd

from cascbench.errors import CascbenchError, unknown_name_error
from cascbench.experiment.config import (
    EXECUTION_ONLY_TRAIN_FIELDS,
    ModelConfig,
    TrainConfig,
)
from cascbench.experiment.labels import changed_params, dataset_label
from cascbench.experiment.store import StoredRun
from cascbench.settings import get_setting

TRAIN_DEFAULTS = TrainConfig().model_dump(mode="json")
MODEL_DEFAULTS = ModelConfig().model_dump(mode="json")

#: Row order of the paper's tables; other methods follow alphabetically.
PAPER_METHOD_ORDER = ("bce", "icc", "rankflow", "fs_ranknet", "fs_lambdaloss", "arf", "arf_v2")
#: LCRON comes last in the paper, after every baseline.
LAST_METHODS = ("lcron",)
#: Fields that define what is measured (the test day, the metric's protocol): rows that differ in
#: them are never compared, so they always split the tables, even when set per variant.
EVALUATION_FIELDS = ("train.split", "train.eval_protocol", "train.eval_seed", "train.kendall")


@dataclass(frozen=True)
class SummaryTable:
    """One table: rows are method variants, columns metrics; mean, std (ddof 1) and n per cell,
    over every run of the variant (each (world seed, training seed) replicate).

    runs: the table's runs (one row each: variant, method, method_params, world_seed, seed,
    run_id, metrics).
    train: the training fields and stage-model options shared by every run of the table that
    differ from the defaults.
    variant_train: variant -> the training fields set per variant (constant within each variant,
    different across them, e.g. each method's tuned lr); empty when there are none.
    """

    setting: str
    dataset: str
    mean: pd.DataFrame
    std: pd.DataFrame
    n: pd.DataFrame
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    train: dict = field(default_factory=dict)
    variant_train: dict[str, dict] = field(default_factory=dict)

    @property
    def common(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.train.items())

    @property
    def title(self) -> str:
        return f"{self.setting} on {self.dataset}" + (f" ({self.common})" if self.common else "")

    @property
    def variants(self) -> list[str]:
        return list(self.mean.index)

    @property
    def n_worlds(self) -> int:
        """How many world seeds the table's runs span."""
        return int(self.runs["world_seed"].nunique())

    def train_config(self, variant: str | None = None) -> dict:
        """Every training field of the table's runs (the defaults overridden by `train`), and of
        `variant`'s runs when given (with its fields set per variant)."""
        own = self.variant_train.get(variant, {}) if variant is not None else {}
        return {**TRAIN_DEFAULTS, **self.train, **own}

    def per_replicate(self, metric: str) -> pd.DataFrame:
        """float[variant, (world_seed, seed)]: the metric of each run, the columns a MultiIndex
        of the replicates (NaN where a variant lacks one; duplicate runs of a replicate are
        averaged)."""
        return self.runs.pivot_table(
            index="variant", columns=["world_seed", "seed"], values=metric, aggfunc="mean"
        )


def _method_changes(config: dict) -> list[str]:
    """The method's hyper-parameters that differ from their (setting-resolved) defaults."""
    changed = changed_params(config["setting"], config["method"], config["method_params"])
    return [f"{key}={value}" for key, value in changed.items()]


def runs_frame(runs: list[StoredRun]) -> pd.DataFrame:
    """One row per run: setting, dataset, method, its changed hyper-parameters, its resolved
    hyper-parameters as JSON ("method_params"), every training field ("train.<name>") and
    stage-model option ("model.<name>"), world_seed (the dataset's seed), seed (the training
    seed), run_id, then every metric."""
    if not runs:
        raise CascbenchError(
            "the results folder holds no finished run (no run folder with a DONE marker). "
            "Run `cascbench run --results-dir <folder>` first, or point --results-dir at the "
            "folder it wrote."
        )
    rows = []
    for run in runs:
        # Runs written before a training field existed ran with its default.
        train = {
            f"train.{k}": v
            for k, v in {**TRAIN_DEFAULTS, **run.config["train"]}.items()
            if k not in EXECUTION_ONLY_TRAIN_FIELDS
        }
        rows.append(
            {
                "setting": run.config["setting"],
                "dataset": dataset_label(run.config["dataset"]),
                "method": run.config["method"],
                "method_changes": ", ".join(_method_changes(run.config)),
                "method_params": json.dumps(run.config["method_params"], sort_keys=True),
                **train,
                **{
                    f"model.{k}": v
                    for k, v in {**MODEL_DEFAULTS, **run.config.get("model", {})}.items()
                },
                "world_seed": run.config["dataset"].get("seed", 0),
                "seed": run.config["seed"],
                "run_id": run.run_id,
                "machine": run.machine,
                **run.metrics,
            }
        )
    return pd.DataFrame(rows)


def select_setting(frame: pd.DataFrame, setting: str | None) -> pd.DataFrame:
    """The runs of one setting. Without `setting` the results must hold a single one: tables of
    different settings have different columns and cannot be compared."""
    counts = frame["setting"].value_counts().sort_index()
    if setting is None:
        if len(counts) > 1:
            listing = ", ".join(f"{name} ({count} runs)" for name, count in counts.items())
            raise CascbenchError(
                f"these results mix {len(counts)} settings: {listing}. Pass --setting NAME "
                f"(e.g. --setting {counts.index[0]}) to report one of them."
            )
        return frame
    if setting not in counts.index:
        raise unknown_name_error("setting (in these results)", setting, counts.index)
    return frame[frame["setting"] == setting]


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The metric columns recorded in `frame` (with at least one value)."""
    names = [
        c
        for c in frame.columns
        if ("/" in c and not c.startswith(("train.", "model."))) or c == "joint_recall"
    ]
    return [c for c in names if frame[c].notna().any()]


def paper_columns(setting_name: str) -> list[str]:
    """joint_recall, then each stage's recall and NDCG, last stage first (the paper's order)."""
    stages = reversed(get_setting(setting_name).stage_names)
    return ["joint_recall"] + [f"{m}/{s}" for s in stages for m in ("recall", "ndcg")]


def resolve_metrics(frame: pd.DataFrame, setting: str, metrics: list[str] | None) -> list[str]:
    """The columns to show: None = the paper's (plus the oracle joint recall where the dataset
    knows the true utility); ["all"] = every metric recorded; otherwise the names, checked."""
    recorded = metric_columns(frame)
    if metrics is None:
        columns = [c for c in paper_columns(setting) if c in recorded]
        return columns + [c for c in ("oracle/joint_recall",) if c in recorded]
    if metrics == ["all"]:
        return recorded
    for name in metrics:
        if name not in recorded:
            raise unknown_name_error("metric (in these results)", name, recorded)
    return metrics


def variant_order(labels: list[str], methods: dict[str, str]) -> list[str]:
    """Rows in the paper's order: its baselines, other methods alphabetically, LCRON last; a
    method's default variant before its others. methods: label -> method name."""

    def key(label: str) -> tuple:
        method = methods[label]
        if method in PAPER_METHOD_ORDER:
            position = (0, PAPER_METHOD_ORDER.index(method), "")
        elif method in LAST_METHODS:
            position = (2, LAST_METHODS.index(method), "")
        else:
            position = (1, 0, method)
        return (*position, label != method, _natural_key(label))

    return sorted(labels, key=key)


def _natural_key(label: str) -> tuple:
    """Numbers compared as numbers: lcron[tau=20.0] before lcron[tau=100.0], not after it.
    Text and numbers alternate, so the tuples of two labels compare text with text."""
    parts = re.split(r"(\d+(?:\.\d+)?(?:e[-+]?\d+)?)", label)
    return tuple(float(part) if i % 2 else part for i, part in enumerate(parts))


def _variant_label(row: pd.Series) -> str:
    return row["method"] + (f"[{row['method_changes']}]" if row["method_changes"] else "")


def _with_training(label: str, training: str) -> str:
    """ "lcron[tau=12.3]" + "lr=0.0123" -> "lcron[tau=12.3; lr=0.0123]"; "bce" + "lr=0.1" ->
    "bce[lr=0.1]"; nothing to add leaves the label as it is."""
    if not training:
        return label
    if label.endswith("]"):
        return f"{label[:-1]}; {training}]"
    return f"{label}[{training}]"


def per_variant_fields(group: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns of `columns` that vary across the runs of `group` but are constant within each
    method variant (method and its hyper-parameters): each method trained at its own setting, as
    in a tuned table. Evaluation fields (`EVALUATION_FIELDS`) never qualify. group: a runs frame
    with a "variant" column."""
    text = group[columns].astype(str)
    varying = [c for c in columns if text[c].nunique() > 1 and c not in EVALUATION_FIELDS]
    if not varying:
        return []
    within = text[varying].groupby(group["variant"]).nunique().max(axis=0)
    return [c for c in varying if within[c] == 1]


def summarize(frame: pd.DataFrame, metrics: list[str] | None = None) -> list[SummaryTable]:
    """Tables of mean ± std over replicates (world seed × training seed), one per (setting,
    dataset, training fields and stage-model options that vary within a method variant).

    A field that varies across the runs but is constant within each variant (see
    `per_variant_fields`) does not split the table: the variants whose value differs from the
    default carry it in their label, after their hyper-parameters ("lcron[tau=12.3; lr=0.0123]").
    metrics: the columns to show (see `resolve_metrics`).
    """
    # In TrainConfig's then ModelConfig's order, whatever the order of the stored JSON.
    defaults = {f"train.{k}": v for k, v in TRAIN_DEFAULTS.items()}
    defaults |= {f"model.{k}": v for k, v in MODEL_DEFAULTS.items()}
    train_columns = [c for c in defaults if c in frame.columns]
    tables = []
    for (setting, dataset), group in frame.groupby(["setting", "dataset"], sort=True):
        columns = resolve_metrics(group, setting, metrics)
        group = group.assign(variant=group.apply(_variant_label, axis=1))
        own = per_variant_fields(group, train_columns)
        variant_train: dict[str, dict] = {}
        if own:
            # Column by column: a row of mixed dtypes would turn batch_size 512 into 512.0.
            values = {
                variant: {c: runs[c].iloc[0] for c in own}
                for variant, runs in group.groupby("variant", sort=True)
            }
            labels = {
                variant: _with_training(
                    variant,
                    ", ".join(
                        f"{c.split('.', 1)[1]}={value}"
                        for c, value in fields.items()
                        if value != defaults[c]
                    ),
                )
                for variant, fields in values.items()
            }
            variant_train = {
                labels[variant]: {c.split(".", 1)[1]: value for c, value in fields.items()}
                for variant, fields in values.items()
            }
            group = group.assign(variant=group["variant"].map(labels))
        shared = [c for c in train_columns if c not in own]
        varying = [c for c in shared if group[c].astype(str).nunique() > 1]
        parts = group.groupby(varying, sort=True) if varying else [((), group)]
        for _, part in parts:
            train = {
                c.split(".", 1)[1]: part[c].iloc[0]
                for c in shared
                if part[c].iloc[0] != defaults[c]
            }
            by_variant = part.groupby("variant", sort=True)[columns]
            methods = dict(zip(part["variant"], part["method"], strict=True))
            order = variant_order(list(methods), methods)
            keep = ["variant", "method", "method_params", "world_seed", "seed", "run_id"]
            tables.append(
                SummaryTable(
                    setting,
                    dataset,
                    by_variant.mean().loc[order],
                    by_variant.std(ddof=1).loc[order],
                    by_variant.count().loc[order],
                    part[keep + columns].reset_index(drop=True),
                    train,
                    {v: variant_train[v] for v in order} if own else {},
                )
            )
    return tables


def format_cell(mean: float, std: float, digits: int = 4) -> str:
    """ "0.8732 ± 0.0005"; the std is "n/a" with a single seed, the cell "n/a" without a value."""
    if math.isnan(mean):
        return "n/a"
    spread = "n/a" if math.isnan(std) else f"{std:.{digits}f}"
    return f"{mean:.{digits}f} ± {spread}"


def dense_ranks(mean: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """Per column, 1 = the highest value as displayed (rounded to `digits`), 2 = the next distinct
    value, ...; equal displayed values share a rank. NaN stays NaN. Every metric is better high."""
    return mean.round(digits).rank(axis=0, method="dense", ascending=False)
