"""Sweeps: a numeric hyper-parameter (τ, a loss weight, lr, batch size) that varies across the runs
of one method while everything else stays fixed, as in the paper's Tables 4, 8 and 9–12.

A sweep is found per (setting, dataset, method): every method hyper-parameter and training field
that takes two or more numeric values is a candidate; the runs are grouped by the values of the
other varying fields (the sweep's context), and each group with two or more values of the
parameter is one sweep, with the parameter's values as rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from cascbench.catalogue import default_params
from cascbench.report.tables import TRAIN_DEFAULTS, resolve_metrics


@dataclass(frozen=True)
class Sweep:
    """One method over one parameter's values; mean, std and n are indexed by those values
    (sorted, None first: the method's learned/default mode, e.g. fixed_weight=None)."""

    setting: str
    dataset: str
    method: str
    parameter: str
    context: dict
    mean: pd.DataFrame
    std: pd.DataFrame
    n: pd.DataFrame

    @property
    def title(self) -> str:
        context = ", ".join(f"{k}={v}" for k, v in self.context.items())
        where = f"{self.setting} on {self.dataset}" + (f", {context}" if context else "")
        return f"{self.method}: {self.parameter} sweep ({where})"

    @property
    def numeric(self) -> bool:
        """Every value is a number (None excluded), so the values can be an x axis."""
        return all(isinstance(v, int | float) for v in self.mean.index)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parameters(group: pd.DataFrame) -> pd.DataFrame:
    """One column per method hyper-parameter, training field and stage-model option (without
    "train." or "model.")."""
    # object dtype keeps None (e.g. fixed_weight=None) and Python scalars (json.dumps refuses
    # NumPy integers).
    params = pd.DataFrame(
        [json.loads(p) for p in group["method_params"]], index=group.index, dtype=object
    )
    conditions = [c for c in group.columns if c.startswith(("train.", "model."))]
    train = group[conditions].astype(object).rename(columns=lambda c: c.split(".", 1)[1])
    return pd.concat([params, train], axis=1)


def _sort_key(value: object) -> tuple:
    return (value is not None, value if _is_number(value) else str(value))


def find_sweeps(frame: pd.DataFrame, metrics: list[str] | None = None) -> list[Sweep]:
    """Every sweep in the runs frame (see the module docstring); metrics as in `summarize`."""
    sweeps = []
    for (setting, dataset, method), group in frame.groupby(["setting", "dataset", "method"]):
        columns = resolve_metrics(group, setting, metrics)
        params = _parameters(group)
        # JSON text makes lists and None comparable and hashable.
        keys = params.map(lambda v: json.dumps(v, sort_keys=True))
        varying = [c for c in keys.columns if keys[c].nunique() > 1]
        defaults = {**default_params(setting, method), **TRAIN_DEFAULTS}
        for parameter in varying:
            values = params[parameter]
            if sum(_is_number(v) for v in values.unique()) < 2 or not all(
                _is_number(v) or v is None for v in values
            ):
                continue
            others = [c for c in varying if c != parameter]
            parts = (
                [p.index for _, p in keys.groupby(others, sort=True)] if others else [keys.index]
            )
            for index in parts:
                if params.loc[index, parameter].nunique(dropna=False) < 2:
                    continue
                context = {
                    c: params.loc[index[0], c]
                    for c in others
                    if params.loc[index[0], c] != defaults.get(c)
                }
                values_here = params.loc[index, parameter]
                by_value = group.loc[index, columns].groupby(values_here.map(json.dumps))
                order = sorted(values_here.unique(), key=_sort_key)
                labels = [json.dumps(v) for v in order]
                mean, std, n = (
                    frame_.loc[labels].set_axis(pd.Index(order, dtype=object))
                    for frame_ in (by_value.mean(), by_value.std(ddof=1), by_value.count())
                )
                sweeps.append(Sweep(setting, dataset, method, parameter, context, mean, std, n))
    return sweeps
