"""Per-request cascade metrics (SPEC §3) and `evaluate`.

Pure tensor functions first; `evaluate` runs them over chunks of requests and averages per request,
so its results do not depend on the chunk size. Every metric is computed over valid candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from cascbench.batch import Targets, check_inputs
from cascbench.cascade import (
    cascade_select,
    descending_order,
    rank_of_slots,
    tie_break_priority,
    top_q,
)
from cascbench.errors import CascbenchError
from cascbench.settings import Setting

# The evaluator's version, part of every run id, is cascbench.catalogue.EVALUATOR_VERSION: bump
# it whenever a metric's definition here changes.

#: "clean": every metric over valid candidates (the default). "release": the LCRON release's
#: evaluation, for exact comparison with its numbers (SPEC §3): selections run over all N slots
#: (padded ones included, scored by the model on empty features), GT = the K largest of
#: label·mask with |GT| = K, NDCG over all N slots with the stored labels of padded slots, and
#: only the requests of whole test batches (`counted_requests`).
Protocol = Literal["clean", "release"]

#: The release tests in batches of its training batch size, 1024 in the paper's protocol.
RELEASE_BATCH_SIZE = 1024


def counted_requests(
    n_requests: int, protocol: Protocol = "clean", batch_size: int = RELEASE_BATCH_SIZE
) -> int:
    """How many of a test day's first requests a protocol evaluates: all of them under "clean";
    under "release" the last partial batch of `batch_size` requests is dropped, as the release
    does. Raises CascbenchError when nothing would be evaluated."""
    if protocol != "release":
        return n_requests
    count = n_requests // batch_size * batch_size
    if count == 0:
        raise CascbenchError(
            f"the release evaluation protocol drops the last partial batch of "
            f"batch_size={batch_size} test requests, and a test day has {n_requests}: nothing "
            f"would be evaluated. Use a smaller --batch-size or --eval-protocol clean."
        )
    return count


def ground_truth(
    relevance: torch.Tensor,
    eligible: torch.Tensor,
    k: int,
    priority: torch.Tensor,
    tie_order: torch.Tensor | None = None,
) -> torch.Tensor:
    """bool [B, N]: the (at most) K eligible items with the highest relevance.

    With labels, eligible = the valid items of the ground-truth group (group 0), so a short
    ground-truth group gives |GT| < K instead of promoting negatives; with the true utility of a
    synthetic world (oracle metrics), eligible = all valid items. tie_order: see `top_q`.
    """
    return top_q(relevance, eligible, k, priority, tie_order)


def set_recall(selected: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """float32 [B]: |selected ∩ truth| / |truth| (NaN where truth is empty). Inputs bool [B, N]."""
    hits = (selected & truth).sum(-1).float()
    return hits / truth.sum(-1).float()


def ndcg_at_k(scores: torch.Tensor, gain: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """float32 [B]: NDCG@k with linear gain, discount 1/log2(1 + rank), tied scores averaged.

    As sklearn's ndcg_score(ignore_ties=False): a block of tied scores covering positions
    a+1..a+b contributes its mean gain times the sum of the discounts of those positions (up to k).
    IDCG sorts the gains; 0 where IDCG = 0. scores, gain: float [B, N]; mask: bool [B, N].
    """
    ranked, slots = torch.where(mask, scores, -torch.inf).sort(dim=-1, descending=True)
    return _ndcg_of_ranking(ranked, slots, gain, mask, k, ideal_dcg(gain, mask, k))


def _ndcg_of_ranking(
    ranked: torch.Tensor,
    slots: torch.Tensor,
    gain: torch.Tensor,
    mask: torch.Tensor,
    k: int,
    idcg: torch.Tensor,
) -> torch.Tensor:
    """`ndcg_at_k` from the valid scores sorted in descending order, -inf after them (ranked),
    the slot at each position (slots, whatever the order of tied slots) and `ideal_dcg`.

    The tie blocks are the runs of equal values in `ranked`: no comparison of all pairs.
    """
    n = ranked.shape[-1]
    ranked_gain = torch.where(mask, gain.double(), 0.0).gather(-1, slots)  # padding: no gain
    position = torch.arange(n, device=ranked.device).expand_as(slots)
    starts = torch.ones_like(mask)
    starts[..., 1:] = ranked[..., 1:] != ranked[..., :-1]
    ends = torch.ones_like(mask)
    ends[..., :-1] = starts[..., 1:]
    # Each position's block: its first and last positions; the first = the number scored higher.
    first = torch.where(starts, position, 0).cummax(-1).values
    last = torch.where(ends, position, n).flip(-1).cummin(-1).values.flip(-1)
    cumulative = _cumulative_discount(n, k, ranked.device)
    block_discount = cumulative[last + 1] - cumulative[first]
    dcg = (ranked_gain * block_discount / (last - first + 1)).sum(-1)
    safe = torch.where(idcg > 0, idcg, 1.0)
    return torch.where(idcg > 0, dcg / safe, 0.0).float()


def ideal_dcg(gain: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """float64 [B]: DCG@k of the valid gains in descending order (NDCG's normaliser)."""
    ideal = torch.where(mask, gain.double(), 0.0).sort(dim=-1, descending=True).values[..., :k]
    return (ideal * _discount(ideal.shape[-1], gain.device)).sum(-1)


def _discount(n: int, device: torch.device) -> torch.Tensor:
    """float64 [n]: 1 / log2(1 + rank) for ranks 1..n."""
    return 1.0 / torch.log2(torch.arange(2, n + 2, device=device, dtype=torch.float64))


def _cumulative_discount(n: int, k: int, device: torch.device) -> torch.Tensor:
    """float64 [n + 1]: entry p = the discounts of ranks 1..min(p, k) summed."""
    cumulative = torch.cat(
        [torch.zeros(1, device=device, dtype=torch.float64), _discount(n, device).cumsum(0)]
    )
    cumulative[k + 1 :] = cumulative[k]  # positions beyond k earn nothing
    return cumulative


def kendall_tau_b(scores: torch.Tensor, label: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """float32 [B]: Kendall τ-b between scores and labels over valid items (NaN if undefined).

    τ_b = Σ_{i<j} sgn(Δs)·sgn(Δℓ) / sqrt(Σ_{i<j} |sgn Δs| · Σ_{i<j} |sgn Δℓ|). Inputs [B, N].
    """
    valid_pair = (mask.unsqueeze(-1) & mask.unsqueeze(-2)).double()
    sign_s = torch.sign(scores.double().unsqueeze(-1) - scores.double().unsqueeze(-2)) * valid_pair
    sign_l = torch.sign(label.double().unsqueeze(-1) - label.double().unsqueeze(-2)) * valid_pair
    concordance = (sign_s * sign_l).sum((-1, -2))  # every pair counted twice, which cancels
    denominator = torch.sqrt(sign_s.abs().sum((-1, -2)) * sign_l.abs().sum((-1, -2)))
    return (concordance / denominator).float()


@dataclass(frozen=True)
class EvalResult:
    """Metrics of an evaluation.

    per_request: metric name -> float32 [B]; NaN for requests that were skipped (no ground-truth
    item) and for undefined values (Kendall τ on constant scores).
    means: metric name -> mean over the evaluated requests (NaNs ignored).
    evaluated: bool [B], the requests that have at least one ground-truth item.
    """

    per_request: dict[str, torch.Tensor]
    means: dict[str, float]
    evaluated: torch.Tensor

    @property
    def n_evaluated(self) -> int:
        return int(self.evaluated.sum())


def _check_inputs(
    scores: torch.Tensor, targets: Targets, setting: Setting, protocol: Protocol
) -> None:
    check_inputs(scores, targets, setting)
    for name, stage_scores in zip(setting.stage_names, scores, strict=True):
        bad = ~torch.isfinite(stage_scores)
        if protocol == "clean":  # padded slots take part in the release's selections only
            bad &= targets.mask
        if bad.any():
            raise CascbenchError(
                f"stage {name!r} produced {int(bad.sum())} NaN or infinite scores on "
                f"{'valid candidates' if protocol == 'clean' else 'candidate slots'}; the "
                f"evaluator needs finite scores."
            )


def _evaluate_chunk(
    scores: torch.Tensor,
    targets: Targets,
    setting: Setting,
    priority: torch.Tensor,
    kendall: bool,
    protocol: Protocol,
) -> dict[str, torch.Tensor]:
    mask, k = targets.mask, setting.k
    order = priority.argsort(dim=-1)  # the tie order, shared by every selection below
    if protocol == "release":
        slots = torch.ones_like(mask)  # every selection runs over all N slots
        truth = ground_truth(targets.label * mask, slots, k, priority, order)  # |GT| = K
    else:
        slots = mask
        eligible = mask & (targets.group == 0)
        # With at most K ground-truth slots (RecFlow: 10 = K), GT is all of them: no ranking.
        few = setting.groups[0].size <= k
        truth = eligible if few else ground_truth(targets.label, eligible, k, priority, order)
    # Each stage alone over every slot; the first is also the cascade's first stage.
    rankings = [descending_order(stage_scores, slots, order) for stage_scores in scores]
    alone = [
        (rank_of_slots(ranked_slots) < quota) & slots
        for (_, ranked_slots), quota in zip(rankings, setting.quotas, strict=True)
    ]
    alive = alone[0].unsqueeze(0)
    if setting.n_stages > 1:
        later = cascade_select(scores[1:], alone[0], setting.quotas[1:], priority, order)
        alive = torch.cat([alive, later])
    idcg = ideal_dcg(targets.label, slots, k)  # the same for every stage
    metrics = {"joint_recall": set_recall(alive[-1], truth)}
    oracle_truth = None
    if targets.utility is not None:  # the true top-K among real candidates, in both protocols
        oracle_truth = ground_truth(targets.utility, mask, k, priority, order)
        metrics["oracle/joint_recall"] = set_recall(alive[-1], oracle_truth)
    for t, name in enumerate(setting.stage_names):
        ranked, ranked_slots = rankings[t]
        metrics[f"recall/{name}"] = set_recall(alone[t], truth)
        metrics[f"ndcg/{name}"] = _ndcg_of_ranking(
            ranked, ranked_slots, targets.label, slots, k, idcg
        )
        metrics[f"survival/{name}"] = set_recall(alive[t], truth)
        if kendall:
            metrics[f"kendall/{name}"] = kendall_tau_b(scores[t], targets.label, slots)
        if oracle_truth is not None:
            metrics[f"oracle/recall/{name}"] = set_recall(alone[t], oracle_truth)
    evaluated = truth.any(-1)
    return {name: torch.where(evaluated, v, torch.nan) for name, v in metrics.items()}


def evaluate(
    scores: torch.Tensor,
    targets: Targets,
    setting: Setting,
    seed: int = 0,
    *,
    kendall: bool = False,
    protocol: Protocol = "clean",
    release_batch_size: int = RELEASE_BATCH_SIZE,
    chunk_size: int = 4096,
) -> EvalResult:
    """Evaluate every stage's scores on B requests with the hard cascade of `setting`.

    scores: float [T, B, N], stage t's score of candidate j; targets: Targets [B, N].
    seed drives the tie-breaking of equal scores (request b's tie order depends only on seed and b).
    Metrics: "joint_recall", and per stage name "recall/", "ndcg/", "survival/" (and "kendall/"
    when kendall=True); with a true utility in the targets, "oracle/joint_recall" and
    "oracle/recall/<stage>" against the true top-K. protocol: "clean" or "release" (see
    `Protocol`); under "release" only the first `counted_requests(B, "release",
    release_batch_size)` requests are evaluated (the release's test batch size is its training
    batch size), and per_request holds those. Raises CascbenchError on NaN/inf scores.
    """
    _check_inputs(scores, targets, setting, protocol)
    count = counted_requests(targets.label.shape[0], protocol, release_batch_size)
    scores, targets = scores[:, :count], targets[:count]
    chunks: list[dict[str, torch.Tensor]] = []
    batch_size = targets.label.shape[0]
    for start in range(0, batch_size, chunk_size):
        rows = slice(start, start + chunk_size)
        part = targets[rows]
        priority = tie_break_priority(tuple(part.label.shape), seed, start, scores.device)
        chunks.append(_evaluate_chunk(scores[:, rows], part, setting, priority, kendall, protocol))
    names = chunks[0].keys() if chunks else []
    per_request = {name: torch.cat([c[name] for c in chunks]).cpu() for name in names}
    evaluated = ~per_request["joint_recall"].isnan() if chunks else torch.zeros(0, dtype=torch.bool)
    means = {name: _nanmean(values) for name, values in per_request.items()}
    return EvalResult(per_request=per_request, means=means, evaluated=evaluated)


def _nanmean(values: torch.Tensor) -> float:
    finite = values[~values.isnan()]
    return float(finite.double().mean()) if finite.numel() else math.nan
