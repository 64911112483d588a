"""train.optimizer="sparse_adam" (issue 16): the embedding tables' sparse gradients equal the
dense ones, a first step equals dense Adam's, later steps leave rows a batch did not look up where
they are (lazy Adam), padding rows stay zero, and the option is part of the run id."""

from __future__ import annotations

import pytest
import torch
from test_reference_models import REFERENCE, SCHEMA, make_batch

from cascbench.experiment.config import RunConfig, TrainConfig
from cascbench.experiment.labels import run_label
from cascbench.methods.bce import IndependentBCE
from cascbench.models import build_stage_model
from cascbench.models.embedding import use_sparse_gradients
from cascbench.settings import get_setting
from cascbench.train import build_optimizers, zero_gradients


def _cascade(kind: str) -> torch.nn.ModuleList:
    torch.manual_seed(0)
    return torch.nn.ModuleList([build_stage_model(kind, SCHEMA, model=REFERENCE)])


def _step(models, optimizers, batch) -> None:
    zero_gradients(models, _METHOD)
    # Scaled so that every gradient is far above Adam's eps, which SparseAdam adds before the
    # bias correction (an effective eps 1/sqrt(1 - beta2) = 32 times larger at the first step).
    (models[0](batch).square().mean() * 1e4).backward()
    for optimizer in optimizers:
        optimizer.step()


_METHOD = IndependentBCE(get_setting("recflow-2stage"))


@pytest.mark.parametrize("kind", ["dssm", "mlp", "din"])
def test_the_sparse_gradient_is_the_dense_one(kind):
    dense, sparse = _cascade(kind), _cascade(kind)
    tables = {id(table) for table in use_sparse_gradients(sparse)}
    assert len(tables) == 2  # the context and the item tables
    batch = make_batch(0)
    for models in (dense, sparse):
        models[0](batch).square().mean().backward()
    for a, b in zip(dense.parameters(), sparse.parameters(), strict=True):
        assert b.grad.is_sparse == (id(b) in tables)
        torch.testing.assert_close(b.grad.to_dense(), a.grad, rtol=1e-6, atol=1e-7)


def test_lazy_adam_moves_only_the_rows_a_step_looked_up():
    dense, sparse = _cascade("dssm"), _cascade("dssm")
    dense_optimizers = build_optimizers(dense, _METHOD, lr=0.05)
    sparse_optimizers = build_optimizers(sparse, _METHOD, lr=0.05, optimizer="sparse_adam")
    assert isinstance(sparse_optimizers[-1], torch.optim.SparseAdam)
    first, second = make_batch(1), make_batch(2)
    for models, optimizers in ((dense, dense_optimizers), (sparse, sparse_optimizers)):
        _step(models, optimizers, first)
    # One step from zero moments: lazy and dense Adam agree (dense moves no untouched row yet).
    for a, b in zip(dense.parameters(), sparse.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    table = sparse[0].embeddings.item
    before = table.table.weight.detach().clone()
    for models, optimizers in ((dense, dense_optimizers), (sparse, sparse_optimizers)):
        _step(models, optimizers, second)
    # The rows the second batch looked up: its sparse gradient's (not zeroed, only replaced).
    rows = torch.zeros(table.table.weight.shape[0], dtype=torch.bool)
    rows[table.table.weight.grad.coalesce().indices()[0]] = True
    assert 0 < int(rows.sum()) < rows.numel()
    after = table.table.weight.detach()
    assert torch.equal(after[~rows], before[~rows])  # lazy: untouched rows did not move
    dense_table = dense[0].embeddings.item.table.weight.detach()
    assert not torch.allclose(dense_table[~rows], before[~rows])  # dense Adam's momentum moves them


def test_padding_rows_stay_zero_under_sparse_adam():
    models = _cascade("din")
    optimizers = build_optimizers(models, _METHOD, lr=0.05, optimizer="sparse_adam")
    for seed in range(4):
        _step(models, optimizers, make_batch(seed))
    for group in (models[0].embeddings.context, models[0].embeddings.item):
        padding_rows = group.offsets + group.padding_ids
        assert group.table.weight[padding_rows].abs().sum() == 0


def test_the_optimizer_is_part_of_the_run_id_and_label():
    adam = RunConfig(method="bce").resolved()
    lazy = RunConfig(method="bce", train=TrainConfig(optimizer="sparse_adam")).resolved()
    assert lazy.run_id() != adam.run_id()
    assert "optimizer=sparse_adam" in run_label(lazy)
    assert "optimizer" not in run_label(adam)
