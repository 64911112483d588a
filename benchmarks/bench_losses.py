"""Forward + backward time and peak memory of every method's loss at the paper's batch size.

    python benchmarks/bench_losses.py                  # CPU: B = 1024, T = 2 (N = 40), T = 3 (N = 50)
    python benchmarks/bench_losses.py --device cuda

Each (method, setting) is measured in a fresh process so that the peak memory is its own: on the
CPU the growth of the process's peak resident set over its baseline, on CUDA the allocator's peak
over the inputs. Scores are random, targets follow the setting's layout with some padding.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
from step_timing import time_steps

import cascbench as cb

SETTINGS = ("recflow-2stage", "recflow-3stage")


def random_targets(setting: cb.Setting, batch: int, device: str) -> cb.Targets:
    generator = torch.Generator().manual_seed(0)
    group = setting.slot_group.expand(batch, -1)
    label = torch.tensor([g.label for g in setting.groups])[group].clone()
    size = setting.groups[0].size
    label[:, :size] -= torch.rand(batch, size, generator=generator).argsort(-1) + 1.0
    mask = (torch.rand(batch, setting.n_candidates, generator=generator) > 0.05) | (group < 2)
    return cb.Targets(label, group.clone(), mask).to(device)


def measure(method_name: str, setting_name: str, device: str, batch: int, repeats: int) -> dict:
    setting = cb.get_setting(setting_name)
    method = cb.get_method(method_name, setting).to(device)
    targets = random_targets(setting, batch, device)
    scores = torch.randn(setting.n_stages, batch, setting.n_candidates, device=device)
    scores.requires_grad_()

    def step() -> None:
        method.loss(scores, targets).total.backward()
        scores.grad = None
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return time_steps(step, device, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description="Loss forward + backward benchmark.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "SETTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(*args.one, args.device, args.batch, args.repeats)))
        return
    methods = [
        name for name, cls in cb.list_methods().items() if cls.__module__.startswith("cascbench.")
    ]
    print(f"device {args.device}, B = {args.batch}, median of {args.repeats}; ms / peak MB")
    print("| method | " + " | ".join(SETTINGS) + " |")
    print("|---|" + "---|" * len(SETTINGS))
    for method in methods:
        cells = []
        for setting in SETTINGS:
            command = [sys.executable, __file__, "--one", method, setting, "--device", args.device,
                       "--batch", str(args.batch), "--repeats", str(args.repeats)]  # fmt: skip
            if args.threads:
                command += ["--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                cells.append("error: " + done.stderr.strip().splitlines()[-1])
                continue
            result = json.loads(done.stdout)
            cells.append(f"{result['ms']:.1f} ms / {result['peak_mb']:.0f} MB")
        print(f"| {method} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
