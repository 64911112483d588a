"""Calibrate a synthetic world on independent BCE (`recflow-like`, `recflow-like-3stage`).

For every candidate world (a base preset with some knobs changed), train independent BCE with a
few seeds and print its joint recall and each stage's own recall, next to how far the logged
ranking stage's top-K agrees with the true top-K. The preset is then chosen from this table, on
BCE alone, never on LCRON's result.

    python scripts/calibrate_world.py --base small --jobs 8 \
        --grid funnel_noise_earliest=1.0,1.5,2.0 --grid noise_std=0.5,1.0 --seeds 0,1

docs/worlds.md records the runs behind each calibrated preset.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from concurrent.futures import ProcessPoolExecutor

import yaml


def _run(job: tuple[str, dict, int, str, int, bool]) -> dict:
    base, options, seed, setting_name, threads, clean = job
    import torch

    torch.set_num_threads(threads)
    from cascbench.datasets import load_dataset
    from cascbench.datasets.config import DatasetConfig
    from cascbench.metrics import ground_truth
    from cascbench.models import ModelConfig
    from cascbench.models.config import CLEAN_MODEL
    from cascbench.settings import get_setting
    from cascbench.train import fit
    from cascbench.train_config import TrainConfig

    dataset = DatasetConfig(world=base, world_options=options)
    data = load_dataset(dataset, setting_name)
    setting = get_setting(setting_name)
    # The clean stage models are those the world was calibrated with (docs/worlds.md).
    model = ModelConfig(**CLEAN_MODEL) if clean else ModelConfig()
    train = TrainConfig(device="cpu", drop_last=not clean)
    record = fit(setting, data, "bce", train, seed, model=model)
    # Agreement of the logged last stage (group 0) with the true top-K among the candidates.
    test = data.rows_of_days([data.days()[-1]])
    targets = data.targets(test)
    priority = torch.zeros_like(targets.utility)
    truth = ground_truth(targets.utility, targets.mask, setting.k, priority)
    logged = (targets.group == 0) & targets.mask
    agreement = float(((truth & logged).sum(1).float() / setting.k).mean())
    return {
        **options,
        "seed": seed,
        "logged_vs_true_topk": agreement,
        **{k: v for k, v in record.metrics.items() if k.count("/") <= 1},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="small", help="World preset to start from.")
    parser.add_argument("--setting", default="recflow-2stage")
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        help="KNOB=V1,V2,... (repeatable); values parsed as YAML.",
    )
    parser.add_argument("--set", action="append", default=[], help="KNOB=VALUE fixed for all.")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per job.")
    parser.add_argument(
        "--clean-models",
        action="store_true",
        help="BCE with the clean stage-model options (docs/models.md), as the calibration ran; "
        "default: the reference models.",
    )
    args = parser.parse_args()

    fixed = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    axes = {}
    for item in args.grid:
        knob, _, values = item.partition("=")
        axes[knob] = [yaml.safe_load(v) for v in values.split(",")]
    jobs = [
        (
            args.base,
            {**fixed, **dict(zip(axes, combo, strict=True))},
            int(seed),
            args.setting,
            args.threads,
            args.clean_models,
        )
        for combo in itertools.product(*axes.values())
        for seed in args.seeds.split(",")
    ]
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    with ProcessPoolExecutor(args.jobs) as pool:
        for row in pool.map(_run, jobs):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
