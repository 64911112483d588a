"""Forward + backward time and peak memory of every differentiable top-k relaxation (issue 17).

    python benchmarks/bench_operators.py                 # CPU: B = 1024, N = 40, 50, 200, 500
    python benchmarks/bench_operators.py --device cuda --sizes 40 50 200 500 1000

What is timed is what LCRON asks of a relaxation: the top-k mass of every item,
`relaxed_top_bottom(scores, τ, mask, "clean", relaxation)(k)` with k = N / 4, then a backward
pass of a weighted sum of it. NeuralSort and SoftSort build the N × N matrix (O(N²) time and
memory); LapSum, sparse top-k and OT work on the sorted scores (O(N log N)); the bitonic network
has log₂N·(log₂N + 1)/2 layers of O(N) swaps and the odd-even network N of them. Each cell runs in
a fresh process with one torch thread, so that its peak memory is its own: on the CPU the growth
of the peak resident set over its baseline, on CUDA the allocator's peak over the inputs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
from step_timing import time_steps

from cascbench.methods._relaxed import relaxed_top_bottom
from cascbench.topk import diffsort_topk

RELAXATIONS = ("neuralsort", "softsort", "lapsum", "sparse_topk", "ot", "diffsort", "diffsort_oe")
#: The paper's N (two and three stages) and the long lists where O(N²) falls behind.
SIZES = (40, 50, 200, 500)


def measure(relaxation: str, n: int, device: str, batch: int, repeats: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(batch, n, generator=generator).to(device).requires_grad_()
    mask = (torch.rand(batch, n, generator=generator) > 0.05).to(device)
    weights = torch.rand(batch, n, generator=generator).to(device)
    k = n // 4

    def step() -> None:
        if relaxation == "diffsort_oe":  # the odd-even network: not one of LCRON's options
            top = diffsort_topk(scores, k, 1.0, mask, network="odd_even")
        else:
            top, _ = relaxed_top_bottom(scores, 1.0, mask, "clean", relaxation)(k)
        (top * weights).sum().backward()
        scores.grad = None
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return time_steps(step, device, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description="Top-k relaxation forward + backward benchmark.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--one", nargs=2, metavar=("RELAXATION", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.one:
        relaxation, n = args.one
        print(json.dumps(measure(relaxation, int(n), args.device, args.batch, args.repeats)))
        return
    print(
        f"device {args.device}, B = {args.batch}, k = N/4, median of {args.repeats}; ms / peak MB"
    )
    print("| relaxation | " + " | ".join(f"N = {n}" for n in args.sizes) + " |")
    print("|---|" + "---|" * len(args.sizes))
    for relaxation in RELAXATIONS:
        cells = []
        for n in args.sizes:
            command = [sys.executable, __file__, "--one", relaxation, str(n), "--device",
                       args.device, "--batch", str(args.batch), "--repeats", str(args.repeats)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                cells.append("error: " + (done.stderr.strip().splitlines() or ["killed"])[-1])
                continue
            result = json.loads(done.stdout)
            cells.append(f"{result['ms']:.1f} ms / {result['peak_mb']:.0f} MB")
        print(f"| {relaxation} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
