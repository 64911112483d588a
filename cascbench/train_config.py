"""How one run trains and evaluates (SPEC §2): the optimiser's settings, the split, the
evaluation protocol, and where the run computes. Validated with pydantic; its defaults are the
paper's protocol."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    lr: float = Field(default=0.01, gt=0, description="Adam learning rate (every optimizer).")
    batch_size: int = Field(default=1024, ge=1, description="Requests per training step.")
    epochs: int = Field(default=1, ge=1, description="Passes over the training days.")
    drop_last: bool = Field(
        default=True,
        description=(
            "Drop each training day's last partial batch, as the release does (reference); "
            "false trains on every request."
        ),
    )
    device: str = Field(
        default="auto", description="auto (CUDA when available), cpu, cuda or cuda:N."
    )
    eval_batch_size: int = Field(default=4096, ge=1, description="Requests per inference batch.")
    eval_seed: int = Field(default=1024, description="Seed of the evaluator's tie-breaking.")
    kendall: bool = Field(default=False, description="Also compute Kendall τ-b per stage.")
    split: Literal["last-day", "streaming", "validation"] = Field(
        default="last-day",
        description=(
            "'last-day': train on every day but the last, test on the last. 'streaming': each day "
            "t is tested after training on all days before t (the paper's Figure 2). "
            "'validation': train on every day but the last two and evaluate on the one before the "
            "last (the validation day, for tuning); the last (test) day is never evaluated."
        ),
    )
    eval_protocol: Literal["clean", "release"] = Field(
        default="clean",
        description=(
            "'clean': metrics over valid candidates. 'release': the LCRON release's evaluation "
            "(SPEC §3: all N slots, |GT| = K, padded labels in NDCG, the last partial batch of "
            "batch_size test requests dropped), for exact comparison with its numbers."
        ),
    )
    data_placement: Literal["auto", "whole", "day", "stream"] = Field(
        default="auto",
        description=(
            "Where a GPU run keeps the data: 'whole' (all of it on the device), 'day' (one day at "
            "a time), 'stream' (batches gathered on the host, copied asynchronously). 'auto': the "
            "whole dataset when it is small next to the free device memory, else a day at a time, "
            "else streaming. Data that does not fit falls back to streaming with a message."
        ),
    )
    optimizer: Literal["adam", "sparse_adam"] = Field(
        default="adam",
        description=(
            "'adam': the release's dense Adam over every parameter (reference). 'sparse_adam': "
            "the embedding tables get sparse gradients and a lazy Adam (torch's SparseAdam), "
            "which updates only the rows a batch looked up, and their moments; faster with "
            "large id tables, and it changes the numbers."
        ),
    )
    compile: bool | Literal["auto"] = Field(
        default="auto",
        description=(
            "torch.compile the stage models and the loss: slower start (compilation, about 10 s "
            "with Inductor's on-disk cache warm, 40 s more cold), faster steps (a third less "
            "time per request on a 2-core CPU); numbers change within floating-point noise "
            "only. 'auto': compile a run that trains and tests on at least 100,000 requests, "
            "where that pays (benchmarks/RESULTS.md), when a C++ compiler is there on the CPU."
        ),
    )
