"""Time synthetic world generation and print the difficulty statistics of a world.

Usage: python benchmarks/bench_synthetic.py [--requests 100000] [--setting recflow-2stage]
       [--world small] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import torch

from cascbench.datasets.synthetic import WorldConfig, generate_world, get_world_config
from cascbench.settings import get_setting


def overlap_at(score: torch.Tensor, mask: torch.Tensor, gt: torch.Tensor, q: int) -> float:
    """Mean share of the GT items among the q best valid candidates by score."""
    top = torch.topk(score.masked_fill(~mask, -torch.inf), q, dim=1).indices
    hits = gt.gather(1, top).sum(1).float()
    return (hits / gt.sum(1).clamp_min(1)).mean().item()


def statistics(data, setting) -> None:
    u, mask, group = data.utility, data.mask, data.group
    gt = (group == 0) & mask
    k = setting.k
    share = overlap_at(u, mask, gt, k)
    print(f"logged GT in the true-utility top-{k} of the N candidates: {share:.3f}")
    q = setting.quotas[-1]
    print(f"recall@{k}@{q} of the true utility (oracle scorer): {overlap_at(u, mask, gt, q):.3f}")
    rand = torch.rand(u.shape, generator=torch.Generator().manual_seed(1))
    print(f"recall@{k}@{q} of random scores: {overlap_at(rand, mask, gt, q):.3f}")
    for index, g in enumerate(setting.groups):
        sel = (group == index) & mask
        print(
            f"  group {g.name:12s} mean utility {u[sel].mean().item():+.3f}  "
            f"filled {sel.float().sum().item() / (group == index).sum().item():.3f}"
        )
    print(f"sequence real rows per request: {data.sequence_mask.float().sum(1).mean().item():.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--setting", default="recflow-2stage")
    parser.add_argument("--world", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is reported")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    setting = get_setting(args.setting)
    base = get_world_config(args.world)
    config = WorldConfig(**{**base.model_dump(), "days": 4, "requests_per_day": args.requests // 4})
    generate_world(setting, get_world_config("tiny"))  # warm-up
    times = []
    for _ in range(args.repeats):  # the best of a few runs: shared CPUs make single runs noisy
        start = time.perf_counter()
        data = generate_world(setting, config, seed=args.seed)
        times.append(time.perf_counter() - start)
    elapsed = min(times)
    print(
        f"{data.n_requests} requests ({args.setting}, world {args.world}, "
        f"{torch.get_num_threads()} threads): {elapsed:.2f} s, "
        f"{data.n_requests / elapsed:,.0f} requests/s (runs: {', '.join(f'{t:.2f}' for t in times)} s)"
    )
    statistics(data, setting)


if __name__ == "__main__":
    main()
