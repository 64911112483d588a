"""The LCRON paper's published numbers (ICML 2025, RecFlow), matched to the rows of our tables.

The package ships a copy of the team's `lcron_icml2025_tables.csv` (columns table, setting, method,
metric, mean, std, runs, note). The paper names metrics "rank_recall", "retr_ndcg", ... and method
variants "lcron:tau=20", "lcron:no_e2e"; here they become our metric names ("recall/ranking") and
resolved hyper-parameters, and a paper row matches a row of ours when the setting, the learning
rate, the batch size and the resolved hyper-parameters agree.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources

import pandas as pd
import yaml

from cascbench.errors import CascbenchError
from cascbench.experiment.config import RunConfig
from cascbench.report.tables import SummaryTable

PAPER_FILE = "lcron_icml2025_tables.csv"

#: Tables with several rows for one variant: the main comparisons first, then the ablations.
TABLE_PRIORITY = ("2", "6", "9", "10", "11", "12", "3", "7", "8", "4", "E.1")

_STAGES = {"retr": "retrieval", "prerank": "prerank", "rank": "ranking"}

#: The paper's variant suffixes that are not "key=value": the hyper-parameters they stand for.
_VARIANT_FLAGS = {
    "no_e2e": {"no_e2e": True},
    "no_single": {"no_single": True},
    "softsort": {"sort": "softsort"},
    "neuralsort": {"sort": "neuralsort"},
}
#: Paper parameter names that differ from ours.
_PARAMETER_NAMES = {"q_in_e2e": "k_e2e"}

#: The paper's training protocol when a table's note does not give another.
PAPER_LR, PAPER_BATCH_SIZE = 0.01, 1024


def metric_name(paper_metric: str) -> str | None:
    """ "rank_ndcg" -> "ndcg/ranking", "joint_recall" -> itself; None for the cost columns."""
    if paper_metric == "joint_recall":
        return paper_metric
    stage, _, kind = paper_metric.rpartition("_")
    if stage in _STAGES and kind in ("recall", "ndcg"):
        return f"{kind}/{_STAGES[stage]}"
    return None


def variant_params(paper_method: str) -> tuple[str, dict]:
    """ "lcron:tau=20" -> ("lcron", {"tau": 20}); "lcron:softsort" -> ("lcron", {"sort": ...})."""
    method, _, suffix = paper_method.partition(":")
    if not suffix:
        return method, {}
    if suffix in _VARIANT_FLAGS:
        return method, dict(_VARIANT_FLAGS[suffix])
    key, sep, value = suffix.partition("=")
    if not sep:
        raise CascbenchError(f"{PAPER_FILE}: unknown method variant {paper_method!r}.")
    return method, {_PARAMETER_NAMES.get(key, key): yaml.safe_load(value)}


def _protocol(note: str) -> tuple[float, int]:
    match = re.search(r"lr=([0-9.]+) bs=([0-9]+)", note or "")
    return (float(match[1]), int(match[2])) if match else (PAPER_LR, PAPER_BATCH_SIZE)


@functools.cache
def paper_numbers() -> pd.DataFrame:
    """Every metric row of the paper, in our names: table, setting, method, params (resolved
    hyper-parameters as sorted JSON), metric, mean, std, runs, lr, batch_size, note."""
    with resources.files("cascbench.report").joinpath(PAPER_FILE).open() as handle:
        raw = pd.read_csv(handle, dtype={"table": str})
    raw["metric"] = raw["metric"].map(metric_name)
    raw = raw.dropna(subset=["metric"]).reset_index(drop=True)
    resolved = {}
    for setting, method in raw[["setting", "method"]].drop_duplicates().itertuples(index=False):
        name, params = variant_params(method)
        config = RunConfig(setting=setting, method=name, method_params=params).resolved()
        resolved[(setting, method)] = (name, json.dumps(config.method_params, sort_keys=True))
    keys = list(zip(raw["setting"], raw["method"], strict=True))
    raw["params"] = [resolved[k][1] for k in keys]
    raw["paper_method"] = raw["method"]
    raw["method"] = [resolved[k][0] for k in keys]
    protocol = raw["note"].map(_protocol)
    raw["lr"] = [p[0] for p in protocol]
    raw["batch_size"] = [p[1] for p in protocol]
    return raw


def matching_numbers(
    setting: str, train: dict, variants: dict[str, tuple[str, str]]
) -> pd.DataFrame:
    """The paper's numbers for the rows of one of our tables.

    train: the table's training fields; variants: row label -> (method, resolved params JSON).
    Returns one row per (variant, metric): variant, metric, table, mean, std, runs (the first table
    in `TABLE_PRIORITY` that has the variant). Empty when the protocol differs from every table
    (another setting, learning rate, batch size, more epochs or the streaming split).
    """
    numbers = paper_numbers()
    columns = ["variant", "metric", "table", "mean", "std", "runs"]
    none = numbers.iloc[0:0].assign(variant=pd.Series(dtype=str))[columns]
    if train.get("epochs", 1) != 1 or train.get("split", "last-day") != "last-day":
        return none
    numbers = numbers[
        (numbers["setting"] == setting)
        & (numbers["lr"] == float(train["lr"]))
        & (numbers["batch_size"] == int(train["batch_size"]))
    ]
    priority = {t: i for i, t in enumerate(TABLE_PRIORITY)}
    numbers = numbers.assign(priority=numbers["table"].map(priority)).sort_values("priority")
    rows = []
    for label, (method, params) in variants.items():
        matches = numbers[(numbers["method"] == method) & (numbers["params"] == params)]
        if matches.empty:
            continue
        first_table = matches["table"].iloc[0]
        rows.append(matches[matches["table"] == first_table].assign(variant=label))
    return pd.concat(rows)[columns] if rows else none


def unmatched_reasons(label: str, setting: str, train: dict, method: str, params: str) -> list[str]:
    """Why the paper has no numbers for one row of ours: each condition of `matching_numbers`
    that fails, naming what the paper has instead (empty when a row of the paper matches).

    label: the row's label ("lcron[tau=20.0]"); method and params (resolved hyper-parameters as
    sorted JSON): what the row ran; train: its training fields."""
    numbers = paper_numbers()
    settings = sorted(set(numbers["setting"]))
    if setting not in settings:
        return [f"the paper has no {setting} (only {' and '.join(settings)})"]
    reasons = []
    if train.get("epochs", 1) != 1:
        reasons.append(f"epochs={train['epochs']}: the paper trains one epoch")
    if train.get("split", "last-day") != "last-day":
        reasons.append(f"split={train['split']}: the paper's tables test on the last day")
    on_setting = numbers[numbers["setting"] == setting]
    own = on_setting[on_setting["method"] == method]
    rows = own[own["params"] == params]
    if rows.empty:
        variants = sorted(set(own["paper_method"]))
        has = f"its {method} rows: {', '.join(variants)}" if variants else f"no {method} at all"
        reasons.append(f"{label} has no row in the paper's tables on {setting} ({has})")
        return reasons
    protocols = sorted(set(zip(rows["lr"], rows["batch_size"], strict=True)))
    if (float(train["lr"]), int(train["batch_size"])) not in protocols:
        listed = "; ".join(f"lr={lr}, batch_size={size}" for lr, size in protocols)
        reasons.append(
            f"lr={train['lr']}, batch_size={train['batch_size']}: the paper has {label} at {listed}"
        )
    return reasons


def unmatched_rows(table: SummaryTable) -> dict[str, list[str]]:
    """Row label -> why the paper has no numbers for it (`unmatched_reasons`), for every row of
    `table` that `matching_numbers` leaves without numbers, in the table's order."""
    params = table.runs.groupby("variant")[["method", "method_params"]].first()
    reasons = {}
    for variant in table.variants:
        method, method_params = params.loc[variant]
        found = unmatched_reasons(
            variant, table.setting, table.train_config(variant), method, method_params
        )
        if found:
            reasons[variant] = found
    return reasons
