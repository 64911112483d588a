"""`cascbench tune`: the same tuning budget for every method, chosen on the validation day.

The protocol (issue 14; Dacrema et al. 2019, Rendle et al. 2019): every method, baselines
included, gets the same number of trials from the same seeded TPE sampler (Optuna) over its
declared search space (search_space.py, overridable in the experiment's `tune:` section). A trial
trains with the validation split (training days, then the validation day; the test day is never
evaluated) for each of `tune.seeds` and scores the mean of `tune.metric`. Each trial's runs are
ordinary runs in the store <results>/tuning (same ids, reused when present), driven by run_grid on
any executor, so `--jobs` and Ray run the trials of all methods side by side.

One Optuna study per method, in one storage (SQLite file <results>/tuning/studies.db by default,
or any RDB URL shared by several machines). A study records its identity (setting, dataset,
fixed configuration, space, objective): resuming with another one is an error, not a mixed study
(compared as run ids are: execution-only fields such as the device, and fields added later at
their earlier behaviour, do not count; `comparable_identity`).
Resuming after Ctrl-C, SIGTERM or SIGKILL loses no finished trial and counts none twice: a trial
left running by a process of this machine that is gone is finished with its own parameters (its
finished runs are reused), and the budget counts finished and failed trials. Trials left running
by another machine are never taken for abandoned (its processes cannot be seen from here) unless
the call names that machine in `take_over`: a machine that shared the storage and is gone. The
sampler's seed for trial n is derived from (sampler_seed, method, n), so an interrupted study
proposes the same trials as an uninterrupted one.

At the end, `final.yaml` holds each method at its best configuration for the final runs (the
experiment's seeds × world seeds, tested on the last day): `cascbench run --config` takes it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
import yaml

from cascbench.errors import CascbenchError, unknown_name_error
from cascbench.experiment.config import (
    EXECUTION_ONLY_TRAIN_FIELDS,
    FIELDS_ADDED_LATER,
    SECTIONS_ADDED_LATER,
    RunConfig,
    TrainConfig,
    resolved_run_id,
)
from cascbench.experiment.configfile import ExperimentFile, MethodVariant
from cascbench.experiment.executors import ExecutorChoice, InProcessChoice, RayChoice
from cascbench.experiment.grid import GridObserver, run_grid
from cascbench.experiment.ownership import new_owner, owner_host, owner_is_gone
from cascbench.experiment.plan import plan_experiment, plan_runs
from cascbench.experiment.store import ResultStore
from cascbench.io import atomic_write_bytes
from cascbench.method import get_method_class
from cascbench.search_space import (
    TRAIN_SEARCH_SPACE,
    Choice,
    Dimension,
    FloatRange,
    IntRange,
    SearchSpace,
    parse_dimension,
)

TUNING_FOLDER = "tuning"
STUDY_FILE = "studies.db"
FINAL_FILE = "final.yaml"
#: Tuned float values are rounded to this many significant digits before they run: labels stay
#: readable and two trials that round alike share their runs.
SIGNIFICANT_DIGITS = 3
#: A running trial that no process has signed (see `Tuner._ask`) for this long was left by one
#: that died between asking for it and signing it: it is finished like any abandoned trial.
UNSIGNED_TRIAL_GRACE = datetime.timedelta(minutes=1)
#: How long a worker waits for another one's write lock on a shared SQLite study file.
SQLITE_BUSY_SECONDS = 60.0


def tuning_folder(results_dir: Path) -> Path:
    return Path(results_dir) / TUNING_FOLDER


def default_storage(results_dir: Path) -> str:
    return f"sqlite:///{(tuning_folder(results_dir) / STUDY_FILE).resolve()}"


def method_search_space(
    variant: MethodVariant, overrides: dict[str, Any], source: str = "tune.search_space"
) -> SearchSpace:
    """The dimensions one method is tuned over: TRAIN_SEARCH_SPACE ("train.<field>") and the
    method's declared ones (by parameter name), changed by `overrides` ("train.<field>" for every
    method, "<method>.<param>" for one; None removes a dimension). A field the variant fixes
    (methods: [{lcron: {tau: 20}}]) is not tuned. Errors name the key."""
    method = get_method_class(variant.name)
    space: SearchSpace = dict(TRAIN_SEARCH_SPACE)
    space.update(method.search_space)
    for key, spec in overrides.items():
        head, _, rest = key.partition(".")
        if head == "train":
            if rest not in TrainConfig.model_fields:
                raise CascbenchError(
                    f"{source}.{key}: {unknown_name_error('train field', rest, TrainConfig.model_fields)}"
                )
            name = key
        elif head == variant.name:
            if rest not in method.Params.model_fields:
                unknown = unknown_name_error(f"{head} parameter", rest, method.Params.model_fields)
                raise CascbenchError(f"{source}.{key}: {unknown}")
            name = rest
        elif rest and head:
            get_method_class(head)  # an unknown method name is an error, another method's key not
            continue
        else:
            raise CascbenchError(f"{source}.{key}: expected train.<field> or <method>.<parameter>.")
        if spec is None:
            space.pop(name, None)
        else:
            space[name] = parse_dimension(f"{source}.{key}", spec)
    fixed = {*variant.params, *(f"train.{k}" for k in variant.train)}
    space = {k: v for k, v in space.items() if k not in fixed}
    if not space:
        raise CascbenchError(
            f"{source}: nothing to tune for {variant.name!r} (every dimension removed or fixed)."
        )
    return space


def rounded(value: Any) -> Any:
    """A float to SIGNIFICANT_DIGITS significant digits; other values unchanged."""
    if isinstance(value, float) and value != 0.0 and math.isfinite(value):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    return value


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """One value per dimension, drawn by the study's sampler, rounded as the runs use it."""
    values = {}
    for key, dimension in space.items():
        if isinstance(dimension, FloatRange):
            value = trial.suggest_float(key, dimension.low, dimension.high, log=dimension.log)
        elif isinstance(dimension, IntRange):
            value = trial.suggest_int(key, dimension.low, dimension.high, log=dimension.log)
        else:
            value = trial.suggest_categorical(key, list(dimension.values))
        values[key] = rounded(value)
    return values


def apply_values(variant: MethodVariant, values: dict[str, Any]) -> MethodVariant:
    """The variant with tuned values set: "train.<field>" in its train, the rest in its params."""
    train = {k.removeprefix("train."): v for k, v in values.items() if k.startswith("train.")}
    params = {k: v for k, v in values.items() if not k.startswith("train.")}
    return variant.model_copy(
        update={"params": {**variant.params, **params}, "train": {**variant.train, **train}}
    )


@dataclass(frozen=True)
class TrialRecord:
    """A finished trial as a report reads it."""

    method: str
    number: int
    state: str
    value: float | None
    params: dict[str, Any]


@dataclass
class TuneSummary:
    """What a tune call did: per method, trials finished now and in all; where final.yaml is."""

    finished_now: dict[str, int] = field(default_factory=dict)
    finished: dict[str, int] = field(default_factory=dict)
    best: dict[str, TrialRecord] = field(default_factory=dict)
    final_file: Path | None = None
    stopped_by: str = ""
    stop_signal: int = 0
    failed_runs: dict[str, str] = field(default_factory=dict)
    #: Trials still running in other processes (another machine on a shared storage): final.yaml
    #: waits for them (the next call writes it).
    running_elsewhere: dict[str, int] = field(default_factory=dict)
    #: The machines those trials run on (what `take_over` would name once they are gone).
    running_hosts: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 128 + self.stop_signal if self.stop_signal else 0


#: on_trial(method, trials finished, budget, value or None when the trial failed)
TrialCallback = Callable[[str, int, int, float | None], None]


class Tuner:
    """The tuning of one experiment (one setting and dataset, its methods) in one storage."""

    def __init__(
        self,
        experiment: ExperimentFile,
        source: str,
        results_dir: Path,
        storage: str | None = None,
        take_over: Sequence[str] = (),
    ) -> None:
        """`take_over`: machines (host names) whose running trials are finished here, as a gone
        process's are: they shared the storage and will not come back."""
        if socket.gethostname() in take_over:
            raise CascbenchError(
                f"--take-over names this machine ({socket.gethostname()}): its own trials are "
                f"taken over without it once their process is gone; name other machines only."
            )
        if experiment.grid:
            raise CascbenchError(
                f"{source}: tune takes no grid ({', '.join(experiment.grid)}): tune one setting "
                f"and dataset at a time; the search spaces say what varies."
            )
        if experiment.train.split == "validation":
            raise CascbenchError(
                f"{source}: train.split is the final runs' split (last-day or streaming); trials "
                f"always use the validation split."
            )
        self.experiment = experiment
        self.source = source
        self.results_dir = Path(results_dir)
        self.folder = tuning_folder(self.results_dir)
        self.store = ResultStore(self.folder)
        self.storage_url = storage or default_storage(self.results_dir)
        self.spaces = {
            study_key(v): method_search_space(
                v, experiment.tune.search_space, f"{source}: tune.search_space"
            )
            for v in experiment.methods
        }
        names = [study_key(v) for v in experiment.methods]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise CascbenchError(
                f"{source}: methods: {', '.join(duplicated)} appear twice; a study is one per "
                f"method entry (a method and the parameters it fixes), so tune each entry once."
            )
        for name, space in self.spaces.items():
            if experiment.tune.trials < len(space):
                raise CascbenchError(
                    f"{source}: tune.trials ({experiment.tune.trials}) is below the number of "
                    f"tuned dimensions of {name!r} ({len(space)}: {', '.join(space)}); give at "
                    f"least that many trials or fix some of them."
                )
        # Plans every trial's configuration once, so that a bad setting, dataset or method
        # parameter fails here and not after hours of trials.
        self.trial_experiment = experiment.model_copy(
            update={
                "train": experiment.train.model_copy(update={"split": "validation"}),
                "seeds": list(experiment.tune.seeds),
                "world_seeds": None,
            }
        )
        plan_experiment(self.trial_experiment, source)
        self.worker = new_owner()
        self.take_over = frozenset(take_over)
        self._storage: optuna.storages.BaseStorage | None = None

    # ------------------------------------------------------------------ studies

    def identity(self, variant: MethodVariant) -> dict[str, Any]:
        """What a study is about: trials of another identity must not be mixed into it."""
        tune = self.experiment.tune
        return {
            "setting": self.experiment.setting,
            "dataset": self.experiment.dataset.model_dump(mode="json"),
            "method": variant.name,
            "fixed": variant.model_dump(mode="json"),
            "train": self.trial_experiment.train.model_dump(mode="json"),
            "model": self.experiment.model.model_dump(mode="json"),
            "metric": tune.metric,
            "seeds": list(tune.seeds),
            "sampler_seed": tune.sampler_seed,
            "trials": tune.trials,
            "space": {k: _describe(v) for k, v in self.spaces[study_key(variant)].items()},
        }

    def storage(self) -> optuna.storages.BaseStorage:
        if self._storage is None:
            if self.storage_url.startswith("sqlite:///"):
                self.folder.mkdir(parents=True, exist_ok=True)
            try:
                self._storage = optuna.storages.RDBStorage(
                    self.storage_url,
                    engine_kwargs={"connect_args": {"timeout": SQLITE_BUSY_SECONDS}}
                    if self.storage_url.startswith("sqlite")
                    else None,
                )
            except Exception as exc:  # SQLAlchemy's errors are many; every one means the same
                raise CascbenchError(
                    f"cannot open the study storage {self.storage_url}: {_reason(exc)}"
                ) from None
        return self._storage

    def study(self, variant: MethodVariant) -> optuna.Study:
        """The method's study, created or resumed; refused when it was made for something else."""
        identity = self.identity(variant)
        storage = self.storage()
        try:
            existing = {s.study_name: s for s in optuna.study.get_all_study_summaries(storage)}
        except Exception as exc:
            raise CascbenchError(
                f"cannot read the study storage {self.storage_url}: {_reason(exc)}"
            ) from None
        mine = comparable_identity(identity)
        for name, summary in existing.items():
            other = comparable_identity(json.loads(summary.user_attrs.get("identity", "{}")))
            for key in ("setting", "dataset"):
                if other.get(key) != mine[key]:
                    raise CascbenchError(
                        f"the study storage {self.storage_url} holds study {name!r} of another "
                        f"{key} ({other.get(key)!r}, not {mine[key]!r}): one storage per "
                        f"setting and dataset; give another --results-dir or --storage."
                    )
        name = study_key(variant)
        if name in existing:
            stored = existing[name].user_attrs.get("identity", "{}")
            other = comparable_identity(json.loads(stored))
            changed = [k for k in mine if other.get(k) != mine[k]]
            if changed:
                raise CascbenchError(
                    f"the study {name!r} in {self.storage_url} was made with another "
                    f"{', '.join(changed)} ({', '.join(f'{k}: {other.get(k)!r}' for k in changed)}). "
                    f"Resume with the same experiment, or tune into another --results-dir."
                )
        study = optuna.create_study(
            study_name=name, storage=storage, direction="maximize", load_if_exists=True
        )
        if name not in existing:
            study.set_user_attr("identity", json.dumps(identity, sort_keys=True))
        return study

    def sampler(self, method: str, number: int) -> optuna.samplers.TPESampler:
        """The seeded TPE sampler of trial `number`: the same history gives the same proposal."""
        text = f"{self.experiment.tune.sampler_seed}:{method}:{number}".encode()
        seed = int.from_bytes(hashlib.sha256(text).digest()[:4], "little")
        startup = min(10, max(2, self.experiment.tune.trials // 2))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)

    # ------------------------------------------------------------------ trials

    def trial_configs(self, variant: MethodVariant, values: dict[str, Any]) -> list[RunConfig]:
        """The runs of one trial: the variant at `values`, validation split, each tuning seed."""
        trial_variant = apply_values(variant, values)
        experiment = self.trial_experiment.model_copy(update={"methods": [trial_variant]})
        runs, _ = plan_experiment(experiment, self.source)
        return [r.config for r in runs]

    def _orphans(self, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
        """Running trials left by a process of this machine that is gone (or by an earlier call
        of this process, or by a machine in `take_over`): they are finished with their own
        parameters, not asked again."""
        return [trial for trial in _running(study) if self._abandoned(trial)]

    def _abandoned(self, trial: optuna.trial.FrozenTrial) -> bool:
        worker = _worker(trial)
        if not worker:  # its process died between asking for it and signing it
            started = trial.datetime_start or datetime.datetime.now()
            return datetime.datetime.now() - started > UNSIGNED_TRIAL_GRACE
        return owner_is_gone(worker, self.worker) or owner_host(worker) in self.take_over

    def _ask(
        self, study: optuna.Study, variant: MethodVariant, wanted: int
    ) -> list[tuple[int, dict[str, Any]]]:
        """Up to `wanted` trials to evaluate: orphans first, then new ones within the budget
        (every trial in the study, finished, failed or running, counts against it)."""
        key = study_key(variant)
        space = self.spaces[key]
        chosen = []
        for frozen in self._orphans(study)[:wanted]:
            # Reopened as a live trial (Optuna's frozen trials have no other handle): values it
            # drew already come back as they were; one killed before drawing them all draws the
            # rest with the sampler seeded for its number, as an uninterrupted call would.
            study.sampler = self.sampler(key, frozen.number)
            trial = optuna.trial.Trial(study, frozen._trial_id)
            trial.set_user_attr("worker", self.worker)
            chosen.append((frozen.number, suggest(trial, space)))
        while len(chosen) < wanted and self._remaining(study) > 0:
            study.sampler = self.sampler(key, len(study.get_trials(deepcopy=False)))
            trial = study.ask()
            trial.set_user_attr("worker", self.worker)
            chosen.append((trial.number, suggest(trial, space)))
        return chosen

    def _score(self, run_ids: list[str]) -> float:
        """The trial's objective: the mean of tune.metric over its runs (all finished)."""
        metric = self.experiment.tune.metric
        values = []
        for run_id in run_ids:
            metrics = json.loads((self.store.run_dir(run_id) / "metrics.json").read_text())
            means = metrics["metrics"]
            if metric not in means:
                raise CascbenchError(
                    f"tune.metric {metric!r} is not a metric of these runs; valid: "
                    f"{', '.join(sorted(means))}."
                )
            values.append(float(means[metric]))
        return sum(values) / len(values)

    def run(
        self,
        executor: ExecutorChoice | None = None,
        observer: GridObserver | None = None,
        on_trial: TrialCallback | None = None,
    ) -> TuneSummary:
        """Trials until every method has its budget, then final.yaml. Stops cleanly on a signal
        (the runs of unfinished trials are abandoned; the next call finishes those trials)."""
        try:
            return self._run(executor or InProcessChoice(), observer, on_trial)
        except sqlalchemy.exc.SQLAlchemyError as exc:  # a locked or lost database mid-study
            raise CascbenchError(
                f"the study storage {self.storage_url} failed: {_reason(exc)}. Finished trials "
                f"are kept; run the same command again to resume."
            ) from None

    def _run(
        self,
        executor: ExecutorChoice,
        observer: GridObserver | None,
        on_trial: TrialCallback | None,
    ) -> TuneSummary:
        summary = TuneSummary()
        studies = {study_key(v): (v, self.study(v)) for v in self.experiment.methods}
        # Enough trials per round to keep every slot busy (Ray without --jobs: its CPUs, unknown
        # here, so a few per method).
        slots = getattr(executor, "jobs", None) or (4 if isinstance(executor, RayChoice) else 1)
        while True:
            batch: list[tuple[str, int, list[str]]] = []
            configs: list[RunConfig] = []
            active = [n for n, (_, s) in studies.items() if self._remaining(s) or self._orphans(s)]
            per_study = max(1, -(-slots // max(1, len(active))))
            for name in active:
                variant, study = studies[name]
                for number, values in self._ask(study, variant, per_study):
                    trial_configs = self.trial_configs(variant, values)
                    batch.append((name, number, [resolved_run_id(c) for c in trial_configs]))
                    configs += trial_configs
            if not batch:
                break
            planned, _ = plan_runs(configs)
            grid = run_grid(planned, self.store, executor=executor.build(), observer=observer)
            if grid.stopped_by:
                summary.stopped_by, summary.stop_signal = grid.stopped_by, grid.stop_signal
                return summary
            summary.failed_runs.update(grid.failed)
            for name, number, run_ids in batch:
                study = studies[name][1]
                if any(run_id in grid.failed for run_id in run_ids):
                    # skip_if_finished: another machine that took the trial over told it first.
                    study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                    value = None
                else:
                    value = self._score(run_ids)
                    study.tell(number, value, skip_if_finished=True)
                summary.finished_now[name] = summary.finished_now.get(name, 0) + 1
                if on_trial is not None:
                    on_trial(name, _finished(study), self.experiment.tune.trials, value)
        running = {n: len(_running(s)) for n, (_, s) in studies.items() if _running(s)}
        summary.running_hosts = sorted(
            {owner_host(_worker(t)) for _, s in studies.values() for t in _running(s)} - {""}
        )
        for name, (_, study) in studies.items():
            summary.finished[name] = _finished(study)
            best = best_trial(study)
            if best is None and name not in running:
                raise CascbenchError(
                    f"every trial of {name!r} failed: no configuration to take to the final "
                    f"runs. See `cascbench runs --failed --results-dir {self.folder}`."
                )
            if best is not None:
                summary.best[name] = best
        summary.running_elsewhere = running
        if not running:
            summary.final_file = self.write_final(summary.best)
        return summary

    def _remaining(self, study: optuna.Study) -> int:
        """Trials still to start: the budget less every trial finished, failed or running."""
        return max(0, self.experiment.tune.trials - len(study.get_trials(deepcopy=False)))

    # ------------------------------------------------------------------ final runs

    def final_experiment(self, best: dict[str, TrialRecord]) -> ExperimentFile:
        """Each method at its best configuration; the experiment's seeds × world seeds."""
        methods = [
            apply_values(v, {k: rounded(best[key].params[k]) for k in self.spaces[key]})
            for v, key in ((v, study_key(v)) for v in self.experiment.methods)
        ]
        world_seeds = self.experiment.world_seeds or [self.experiment.dataset.seed]
        tune = self.experiment.tune
        description = (
            f"Final runs of `cascbench tune` ({self.source}): each method at the configuration "
            f"with the best validation {tune.metric} (mean over training seeds "
            f"{', '.join(map(str, tune.seeds))}) of {tune.trials} seeded-TPE trials, trained "
            f"on the training and validation days and tested on the last day."
        )
        return self.experiment.model_copy(
            update={
                "description": description,
                "methods": methods,
                "world_seeds": list(world_seeds),
                "tune": type(self.experiment.tune)(),
            }
        )

    def write_final(self, best: dict[str, TrialRecord]) -> Path:
        experiment = self.final_experiment(best)
        fields = experiment.model_dump(mode="json", exclude={"tune", "grid", "methods"})
        dataset = {k: v for k, v in fields["dataset"].items() if v not in (None, {})}
        dataset.pop("seed")  # world_seeds says which worlds
        document = {
            "description": fields["description"],
            "setting": fields["setting"],
            "dataset": dataset,
            "methods": [v.as_entry() for v in experiment.methods],
            "seeds": fields["seeds"],
            "world_seeds": fields["world_seeds"],
            "train": fields["train"],
            "model": fields["model"],
        }
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
        path = self.folder / FINAL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, text.encode())
        return path


def comparable_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """A study identity as resuming compares it: the training fields that do not change a run's
    numbers left out (EXECUTION_ONLY_TRAIN_FIELDS), and a field added after the study was made
    (FIELDS_ADDED_LATER) counted as absent at the value that reproduces the runs from before it,
    as run ids do. So a study resumes on another device and under a later version."""
    comparable = json.loads(json.dumps(identity))  # a deep copy
    train = comparable.get("train")
    if isinstance(train, dict):
        for name in EXECUTION_ONLY_TRAIN_FIELDS:
            train.pop(name, None)
    for section, fields in FIELDS_ADDED_LATER.items():
        if section not in comparable and section in SECTIONS_ADDED_LATER:
            comparable[section] = {}
        values = comparable.get(section)
        if isinstance(values, dict):
            for name, original in fields.items():
                if values.get(name, original) == original:
                    values.pop(name, None)
    return comparable


def study_key(variant: MethodVariant) -> str:
    """The study of a method entry: its method name, with the parameters it fixes when it has any
    ("lcron[sort=lapsum]"), so that variants of one method are tuned apart, each on its budget."""
    if not variant.params:
        return variant.name
    fixed = ", ".join(f"{k}={v}" for k, v in sorted(variant.params.items()))
    return f"{variant.name}[{fixed}]"


def best_trial(study: optuna.Study) -> TrialRecord | None:
    """The completed trial of the highest value (the earliest on ties); None when none is."""
    complete = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    if not complete:
        return None
    top = max(complete, key=lambda t: (t.value, -t.number))
    params = {k: rounded(v) for k, v in top.params.items()}
    return TrialRecord(study.study_name, top.number, "COMPLETE", top.value, params)


def _finished(study: optuna.Study) -> int:
    states = [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    return len(study.get_trials(deepcopy=False, states=states))


def _running(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING])


def _worker(trial: optuna.trial.FrozenTrial) -> str:
    """The owner token of the process that runs (or ran) the trial."""
    return str(trial.user_attrs.get("worker", ""))


def _describe(dimension: Dimension) -> str:
    return dimension.describe() if isinstance(dimension, FloatRange | IntRange | Choice) else ""


def _reason(exc: Exception) -> str:
    """The first line of a storage error, without SQLAlchemy's long background link."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
