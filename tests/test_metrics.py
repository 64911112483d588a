"""The evaluator against a plain-Python, one-request-at-a-time implementation of SPEC §3."""

import math

import pytest
import scipy.stats
import torch

from cascbench.batch import Targets
from cascbench.cascade import tie_break_priority
from cascbench.errors import CascbenchError
from cascbench.metrics import evaluate
from cascbench.settings import get_setting
from helpers import random_targets, tiny_setting


def _top(items, key, q):
    return set(sorted(items, key=key)[:q])


def _ndcg(scores, gains, k):
    """sklearn's ndcg_score(ignore_ties=False) for one request, written as loops."""
    discount = [1 / math.log2(i + 2) if i < k else 0.0 for i in range(len(scores))]
    dcg, position = 0.0, 0
    for value in sorted(set(scores), reverse=True):
        block = [g for s, g in zip(scores, gains, strict=True) if s == value]
        dcg += sum(block) / len(block) * sum(discount[position : position + len(block)])
        position += len(block)
    ideal = sum(g * d for g, d in zip(sorted(gains, reverse=True), discount, strict=False))
    return dcg / ideal if ideal > 0 else 0.0


def reference_metrics(scores, targets, setting, seed, release=False):
    """Per-request metrics by brute force; None for skipped requests. release: SPEC §3's release
    protocol (all N slots, GT = the K largest of label·mask, stored labels of padded slots)."""
    priority = tie_break_priority(tuple(targets.label.shape), seed)
    rows = []
    for b in range(targets.label.shape[0]):
        if release:
            valid = list(range(targets.label.shape[1]))
            masked = [(targets.label[b, j] * targets.mask[b, j]).item() for j in valid]
            truth = _top(valid, lambda j, b=b, m=masked: (-m[j], priority[b, j]), setting.k)
        else:
            valid = [j for j in range(targets.label.shape[1]) if targets.mask[b, j]]
            gt_candidates = [j for j in valid if targets.group[b, j] == 0]
            truth = _top(
                gt_candidates, lambda j, b=b: (-targets.label[b, j], priority[b, j]), setting.k
            )
        if not truth:
            rows.append(None)
            continue
        row, alive = {}, list(valid)
        for t, (name, q) in enumerate(zip(setting.stage_names, setting.quotas, strict=True)):

            def key(j, t=t, b=b):
                return (-scores[t, b, j].item(), priority[b, j].item())

            alive = sorted(_top(alive, key, q))
            alone = _top(valid, key, q)
            row[f"survival/{name}"] = len(truth & set(alive)) / len(truth)
            row[f"recall/{name}"] = len(truth & alone) / len(truth)
            row[f"ndcg/{name}"] = _ndcg(
                [scores[t, b, j].item() for j in valid],
                [targets.label[b, j].item() for j in valid],
                setting.k,
            )
            tau = scipy.stats.kendalltau(
                [scores[t, b, j].item() for j in valid], [targets.label[b, j].item() for j in valid]
            ).statistic
            row[f"kendall/{name}"] = tau
        row["joint_recall"] = row[f"survival/{setting.stage_names[-1]}"]
        rows.append(row)
    return rows


@pytest.mark.parametrize("protocol", ["clean", "release"])
@pytest.mark.parametrize("n_stages", [1, 2, 3])
def test_metrics_match_the_brute_force_reference(n_stages, protocol, generator):
    setting = tiny_setting(n_stages)
    targets = random_targets(setting, 60, generator, pad_prob=0.3)
    targets.mask[0, :3] = False  # no ground-truth item: skipped
    targets.mask[1, :3] = torch.tensor([False, True, False])  # |GT| = 1 < K
    # rounded scores: many ties, so the tie-breaking is exercised
    scores = torch.round(torch.randn(n_stages, 60, 8, generator=generator) * 2) / 2
    # one test batch of 60: the release protocol drops no request here
    result = evaluate(
        scores, targets, setting, seed=3, kendall=True, protocol=protocol, release_batch_size=60
    )
    expected = reference_metrics(scores, targets, setting, seed=3, release=protocol == "release")
    if protocol == "clean":
        assert expected[0] is None and expected[1] is not None
    for b, row in enumerate(expected):
        if row is None:
            assert not result.evaluated[b]
            assert math.isnan(result.per_request["joint_recall"][b])
            continue
        for name, value in row.items():
            got = result.per_request[name][b].item()
            if math.isnan(value):
                assert math.isnan(got), (name, b)
            else:
                assert got == pytest.approx(value, abs=1e-5), (name, b)
    means = result.means["joint_recall"]
    kept = [row["joint_recall"] for row in expected if row is not None]
    assert means == pytest.approx(sum(kept) / len(kept))


def test_results_do_not_depend_on_the_chunk_size(generator):
    setting = get_setting("recflow-2stage")
    targets = random_targets(setting, 300, generator)
    scores = torch.round(torch.randn(2, 300, 40, generator=generator))  # heavy ties
    whole = evaluate(scores, targets, setting, seed=1, chunk_size=4096)
    chunked = evaluate(scores, targets, setting, seed=1, chunk_size=7)
    for name, values in whole.per_request.items():
        torch.testing.assert_close(values, chunked.per_request[name], equal_nan=True)
    assert whole.means == chunked.means


def test_the_seed_only_matters_through_ties(generator):
    setting = get_setting("recflow-2stage")
    targets = random_targets(setting, 200, generator)
    distinct = torch.randn(2, 200, 40, generator=generator)
    assert (
        evaluate(distinct, targets, setting, seed=0).means
        == evaluate(distinct, targets, setting, seed=9).means
    )
    tied = torch.zeros(2, 200, 40)
    assert (
        evaluate(tied, targets, setting, seed=0).means
        != evaluate(tied, targets, setting, seed=9).means
    )


def test_perfect_scores_recall_everything(generator):
    setting = get_setting("recflow-3stage")
    targets = random_targets(setting, 50, generator, pad_prob=0.0)
    scores = targets.label.expand(3, -1, -1).clone()
    result = evaluate(scores, targets, setting)
    assert result.means["joint_recall"] == 1.0
    assert result.means["ndcg/ranking"] == pytest.approx(1.0)


def test_oracle_metrics_use_the_true_utility(generator):
    setting = get_setting("recflow-2stage")
    base = random_targets(setting, 40, generator, pad_prob=0.0)
    utility = torch.randn(40, 40, generator=generator)
    targets = Targets(base.label, base.group, base.mask, utility)
    result = evaluate(utility.expand(2, -1, -1).clone(), targets, setting)
    assert result.means["oracle/joint_recall"] == 1.0
    assert result.means["oracle/recall/retrieval"] == 1.0


def test_non_finite_scores_name_the_stage(generator):
    setting = get_setting("recflow-2stage")
    targets = random_targets(setting, 4, generator, pad_prob=0.0)
    scores = torch.randn(2, 4, 40, generator=generator)
    scores[1, 2, 5] = torch.nan
    with pytest.raises(CascbenchError, match="ranking"):
        evaluate(scores, targets, setting)


def test_non_finite_scores_on_padding_are_ignored(generator):
    setting = get_setting("recflow-2stage")
    targets = random_targets(setting, 4, generator, pad_prob=0.3)
    scores = torch.randn(2, 4, 40, generator=generator).masked_fill(~targets.mask, -torch.inf)
    assert evaluate(scores, targets, setting).n_evaluated > 0


def test_wrong_shape_is_refused(generator):
    setting = get_setting("recflow-2stage")
    targets = random_targets(setting, 4, generator)
    with pytest.raises(CascbenchError, match=r"\[T, B, N\]"):
        evaluate(torch.zeros(3, 4, 40), targets, setting)


def test_release_protocol_equals_clean_on_full_requests(generator):
    setting = get_setting("recflow-2stage")
    targets = random_targets(setting, 100, generator, pad_prob=0.0)
    scores = torch.randn(2, 100, 40, generator=generator)
    clean = evaluate(scores, targets, setting, kendall=True)
    release = evaluate(
        scores, targets, setting, kendall=True, protocol="release", release_batch_size=100
    )
    for name, values in clean.per_request.items():
        torch.testing.assert_close(release.per_request[name], values, equal_nan=True)


def test_release_protocol_counts_padded_slots(generator):
    setting = get_setting("recflow-2stage")
    targets = random_targets(setting, 50, generator, pad_prob=0.3)
    scores = torch.randn(2, 50, 40, generator=generator).masked_fill(~targets.mask, 9.0)
    # padded slots scored highest crowd out real items only under the release protocol
    clean = evaluate(scores, targets, setting).means["joint_recall"]
    release = evaluate(scores, targets, setting, protocol="release", release_batch_size=50)
    assert release.means["joint_recall"] < clean
    with pytest.raises(CascbenchError, match="candidate slots"):
        evaluate(scores.masked_fill(~targets.mask, torch.nan), targets, setting, protocol="release")
