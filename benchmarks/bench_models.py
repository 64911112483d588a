"""Time each stage model's forward and forward+backward on one paper-sized batch.

    python benchmarks/bench_models.py                  # CPU, B=1024, N=40, L=50
    python benchmarks/bench_models.py --device cuda    # also reports peak GPU memory
    python benchmarks/bench_models.py --model clean    # the clean options (docs/models.md)

Ids are uniform over a RecFlow-like schema (8 context fields, 5 item fields, 3 upload-time fields).
The id tables' sizes matter to the backward pass (each table gets a dense gradient), so the two big
ones are options; RecFlow itself has about 42k users and 9M videos.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cascbench.batch import Batch, Targets
from cascbench.data import FeatureSchema
from cascbench.models import ModelConfig, build_stage_model
from cascbench.models.config import CLEAN_MODEL
from cascbench.settings import STAGE_MODELS


def recflow_like_schema(users: int, videos: int) -> FeatureSchema:
    return FeatureSchema(
        context_fields=(
            ("weekday", 8), ("hour", 25), ("minute", 61), ("user_id", users),
            ("device_id", users), ("gender", 4), ("age", 10), ("province", 40),
        ),
        item_fields=(
            ("video_id", videos), ("author_id", videos // 4), ("category_level_two", 1_000),
            ("category_level_one", 100), ("upload_type", 10),
        ),
        candidate_fields=(("upload_weekday", 8), ("upload_hour", 25), ("upload_minute", 61)),
    )  # fmt: skip


def random_batch(schema: FeatureSchema, b: int, n: int, length: int, device: str) -> Batch:
    def ids(fields: tuple[tuple[str, int], ...], *shape: int) -> torch.Tensor:
        vocab = torch.tensor([v for _, v in fields])
        return (torch.rand(*shape, len(fields)) * vocab).long()

    valid = torch.randint(0, length + 1, (b, 1))  # ragged histories, some empty
    batch = Batch(
        context=ids(schema.context_fields, b),
        sequence=ids(schema.item_fields, b, length),
        sequence_mask=torch.arange(length) < valid,
        candidates=ids(schema.item_fields + schema.candidate_fields, b, n),
        targets=Targets(
            torch.zeros(b, n),
            torch.zeros(b, n, dtype=torch.long),
            torch.ones(b, n, dtype=torch.bool),
        ),
    )
    return batch.to(device)


def time_ms(step: object, device: str, warmup: int, repeats: int) -> float:
    """Median wall time of `step()` in milliseconds."""
    times = []
    for i in range(warmup + repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()  # type: ignore[operator]
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--length", type=int, default=50, help="behaviour sequence length L")
    parser.add_argument("--users", type=int, default=42_000)
    parser.add_argument("--videos", type=int, default=1_000_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--model",
        choices=["reference", "clean"],
        default="reference",
        help="the stage models' reference mode (default) or every clean option (docs/models.md)",
    )
    args = parser.parse_args()
    options = ModelConfig(**CLEAN_MODEL) if args.model == "clean" else ModelConfig()

    torch.manual_seed(0)
    schema = recflow_like_schema(args.users, args.videos)
    batch = random_batch(schema, args.batch, args.candidates, args.length, args.device)
    print(
        f"B={args.batch} N={args.candidates} L={args.length} device={args.device} "
        f"threads={torch.get_num_threads()} torch={torch.__version__} "
        f"users={args.users} videos={args.videos} model={args.model}; median of "
        f"{args.repeats}, ms per batch"
    )
    print(f"{'model':6} {'forward':>10} {'fwd+bwd':>10} {'peak MB':>10}")
    for kind in STAGE_MODELS:
        model = build_stage_model(kind, schema, model=options).to(args.device)

        def forward(model: torch.nn.Module = model) -> None:
            with torch.no_grad():
                model(batch)

        def forward_backward(model: torch.nn.Module = model) -> None:
            model.zero_grad(set_to_none=True)
            model(batch).sum().backward()

        forward_ms = time_ms(forward, args.device, args.warmup, args.repeats)
        peak = "-"
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        train_ms = time_ms(forward_backward, args.device, args.warmup, args.repeats)
        if args.device == "cuda":
            peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f}"
        print(f"{kind:6} {forward_ms:10.1f} {train_ms:10.1f} {peak:>10}")
        del model


if __name__ == "__main__":
    main()
