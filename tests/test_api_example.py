"""The API example runs as written; `example_targets` lays targets out as the data does; wrong
inputs to `Method.loss` and `evaluate` are errors that name the argument and the shapes."""

import re
import runpy
from pathlib import Path

import pytest
import torch

import cascbench as cb
from cascbench.batch import Targets

EXAMPLE = Path(__file__).parents[1] / "examples" / "api.py"


def test_the_api_example_runs_end_to_end(capsys):
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "gradient of the scores: [2, 256, 40]" in out
    assert re.search(r"joint_recall 0\.\d{4} over \d+ requests", out)
    assert "ndcg/ranking per request: [256]" in out


@pytest.mark.parametrize("name", ["recflow-2stage", "recflow-3stage", "synthetic-4stage"])
def test_example_targets_follow_the_canonical_layout(name):
    setting = cb.get_setting(name)
    targets = cb.example_targets(setting, batch_size=64, seed=3)
    shape = (64, setting.n_candidates)
    assert targets.label.shape == targets.group.shape == targets.mask.shape == shape
    assert targets.label.dtype == torch.float32 and targets.group.dtype == torch.int64
    assert targets.mask.dtype == torch.bool
    assert torch.equal(targets.group, setting.slot_group.expand(64, -1))  # group 0 first
    start = 0
    for group in setting.groups:
        mask = targets.mask[:, start : start + group.size]
        label = targets.label[:, start : start + group.size]
        real = mask.sum(-1)
        assert (real >= 1).all()
        # real items first, padding after them
        assert torch.equal(mask, torch.arange(group.size) < real.unsqueeze(-1))
        if group.graded:  # label - logged rank: each of 1..real once among the real items
            for row in range(64):
                ranks = sorted((group.label - label[row, mask[row]]).tolist())
                assert ranks == list(range(1, int(real[row]) + 1))
            assert (label[~mask] == group.label).all()
        else:
            assert (label == group.label).all()
        start += group.size
    again = cb.example_targets(setting, batch_size=64, seed=3)
    assert torch.equal(again.label, targets.label) and torch.equal(again.mask, targets.mask)
    other = cb.example_targets(setting, batch_size=64, seed=4)
    assert not torch.equal(other.mask, targets.mask)


SETTING = cb.get_setting("recflow-2stage")
GOOD = cb.example_targets(SETTING, batch_size=8)
GOOD_SCORES = torch.randn(2, 8, 40)


@pytest.mark.parametrize(
    ("scores", "targets", "message"),
    [
        (
            GOOD_SCORES[0],
            GOOD,
            "scores: expected shape [T, B, N] = [2, 8, 40] (T: the 2 stages of setting "
            "'recflow-2stage'; B, N: of targets.label), got [8, 40]. Is the stage dimension "
            "missing?",
        ),
        (
            GOOD_SCORES,
            Targets(GOOD.label, GOOD.group, GOOD.mask.float()),
            "targets.mask: expected a tensor of dtype bool and shape [B, N] (True for real "
            "candidates), got dtype torch.float32.",
        ),
        (
            GOOD_SCORES[:, :5],
            GOOD,
            "scores: expected shape [T, B, N] = [2, 8, 40]",
        ),
        (
            GOOD_SCORES[:, :, :30],
            Targets(GOOD.label[:, :30], GOOD.group[:, :30], GOOD.mask[:, :30]),
            "targets.label: expected shape [B, N] with N = 40 (the candidate slots of setting "
            "'recflow-2stage': rank_pos 10, rank_neg 10, coarse_neg 10, prerank_neg 10), got "
            "[8, 30].",
        ),
        (
            GOOD_SCORES,
            Targets(GOOD.label, GOOD.group.int(), GOOD.mask),
            "targets.group: expected a tensor of dtype int64 and shape [B, N] (the group indices), "
            "got dtype torch.int32.",
        ),
        (
            GOOD_SCORES,
            Targets(GOOD.label, GOOD.group[:4], GOOD.mask),
            "targets.group: expected shape [B, N] = [8, 40] on cpu, as targets.label, got [4, 40]",
        ),
        (GOOD_SCORES.long(), GOOD, "scores: expected a tensor of dtype float and shape [T, B, N]"),
        (GOOD_SCORES.tolist(), GOOD, "scores: expected a torch.Tensor of dtype float and shape"),
        (GOOD_SCORES, {"label": GOOD.label}, "targets: expected cb.Targets(label, group, mask)"),
    ],
)
def test_wrong_inputs_are_errors_naming_the_argument(scores, targets, message):
    method = cb.get_method("lcron", SETTING)
    for call in (
        lambda: method.loss(scores, targets),
        lambda: cb.get_method("rankflow", SETTING).loss(scores, targets, step=0),
        lambda: cb.evaluate(scores, targets, SETTING),
    ):
        with pytest.raises(cb.CascbenchError) as error:
            call()
        assert message in str(error.value)


def test_every_registered_method_checks_its_inputs():
    for name in cb.list_methods():
        method = cb.get_method(name, SETTING)
        with pytest.raises(cb.CascbenchError, match=r"^scores: expected shape \[T, B, N\]"):
            method.loss(GOOD_SCORES[0], GOOD)
        assert torch.isfinite(method.loss(GOOD_SCORES, GOOD).total)
