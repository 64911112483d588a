"""Stage models (SPEC §6): shapes, split attention, masking, towers, equivariance, gradients.

With the clean options (trainable id 0, masked mean, small init); the reference mode of §6.1 is
tested in test_reference_models.py."""

from __future__ import annotations

import pytest
import torch

from cascbench.batch import Batch, Targets
from cascbench.data import FeatureSchema
from cascbench.errors import CascbenchError
from cascbench.models import DIN, DSSM, MLP, ModelConfig, build_stage_model
from cascbench.models.config import CLEAN_MODEL
from cascbench.models.din import _AttentionLogits
from cascbench.models.embedding import EMBEDDING_INIT_STD, FieldEmbeddings, masked_mean
from cascbench.settings import STAGE_MODELS

# Different vocabulary sizes per field, so each field's rows start at a different offset.
SCHEMA = FeatureSchema(
    context_fields=(("weekday", 8), ("hour", 25), ("user_id", 50), ("province", 40)),
    item_fields=(("video_id", 50), ("author_id", 45), ("category", 30)),
    candidate_fields=(("upload_weekday", 8), ("upload_hour", 25)),
)
B, N, L = 5, 6, 7
CLEAN = ModelConfig(**CLEAN_MODEL)


def make_batch(dtype: torch.dtype = torch.int64, seed: int = 0) -> Batch:
    """Random ids; request 0 has no valid sequence position, request 1 only valid ones."""
    g = torch.Generator().manual_seed(seed)

    def ids(fields: tuple[tuple[str, int], ...], *shape: int) -> torch.Tensor:
        columns = [torch.randint(0, vocab, (*shape, 1), generator=g) for _, vocab in fields]
        return torch.cat(columns, dim=-1).to(dtype)

    mask = torch.rand(B, L, generator=g) < 0.6
    mask[0] = False
    mask[1] = True
    mask[2, 0] = True  # every other request has at least one valid position
    mask[2, 1] = False
    return Batch(
        context=ids(SCHEMA.context_fields, B),
        sequence=ids(SCHEMA.item_fields, B, L),
        sequence_mask=mask,
        candidates=ids(SCHEMA.item_fields + SCHEMA.candidate_fields, B, N),
        targets=Targets(
            torch.zeros(B, N),
            torch.zeros(B, N, dtype=torch.long),
            torch.ones(B, N, dtype=torch.bool),
        ),
    )


def make_model(kind: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.nn.Module:
    """A model whose embeddings are unit-variance, so every input visibly moves the scores."""
    torch.manual_seed(seed)
    model = build_stage_model(kind, SCHEMA, model=CLEAN)
    for group in field_groups(model):
        torch.nn.init.normal_(group.table.weight)
    return model.to(dtype)


def field_groups(model: torch.nn.Module) -> list[FieldEmbeddings]:
    return [model.embeddings.context, model.embeddings.item]


def field_weights(model: torch.nn.Module) -> dict[str, tuple[torch.nn.Parameter, slice]]:
    """Each field's table: the matrix that stores it and its rows there."""
    return {
        name: (group.table.weight, group.field_rows(name))
        for group in field_groups(model)
        for name in group.names
    }


def with_sequence(batch: Batch, sequence: torch.Tensor) -> Batch:
    return Batch(batch.context, sequence, batch.sequence_mask, batch.candidates, batch.targets)


def with_candidates(batch: Batch, candidates: torch.Tensor) -> Batch:
    return Batch(batch.context, batch.sequence, batch.sequence_mask, candidates, batch.targets)


# Reference forms: everything concatenated, the way SPEC §6 writes the models.


def reference_attention_logits(
    model: DIN, sequence: torch.Tensor, items: torch.Tensor
) -> torch.Tensor:
    """MLP_att([s_l ‖ c_n]) on the materialised [B, N, L, 2 F d] concatenation -> [B, N, L]."""
    n, length = items.shape[1], sequence.shape[1]
    pairs = torch.cat(
        [
            sequence.unsqueeze(1).expand(-1, n, -1, -1),
            items.unsqueeze(2).expand(-1, -1, length, -1),
        ],
        dim=-1,
    )
    return model.attention(pairs).squeeze(-1)


def reference_din_scores(model: DIN, batch: Batch) -> torch.Tensor:
    emb = model.embeddings
    context = emb.context_input(batch)
    sequence = emb.sequence_input(batch)
    candidates = emb.candidate_input(batch)
    items = candidates[..., : emb.item_width]
    logits = reference_attention_logits(model, sequence, items)
    logits = logits.masked_fill(~batch.sequence_mask.unsqueeze(1), float("-inf"))
    weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # no valid position: weights 0
    interest = torch.einsum("bnl,bld->bnd", weights, sequence)
    n = candidates.shape[1]
    inputs = torch.cat([context.unsqueeze(1).expand(-1, n, -1), interest, candidates], dim=-1)
    return model.head(inputs).squeeze(-1)


def reference_mlp_scores(model: MLP, batch: Batch) -> torch.Tensor:
    emb = model.embeddings
    sequence = emb.sequence_input(batch)
    mask = batch.sequence_mask
    mean = (sequence * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    user = torch.cat([emb.context_input(batch), mean], dim=-1)
    candidates = emb.candidate_input(batch)
    inputs = torch.cat([user.unsqueeze(1).expand(-1, candidates.shape[1], -1), candidates], dim=-1)
    return model.head(inputs).squeeze(-1)


# Building and shapes


@pytest.mark.parametrize("kind", STAGE_MODELS)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_scores_are_float32_b_by_n(kind: str, dtype: torch.dtype) -> None:
    scores = build_stage_model(kind, SCHEMA, model=CLEAN)(make_batch(dtype))
    assert scores.shape == (B, N)
    assert scores.dtype == torch.float32
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("kind", STAGE_MODELS)
def test_int32_and_int64_ids_give_the_same_scores(kind: str) -> None:
    model = make_model(kind)
    torch.testing.assert_close(model(make_batch(torch.int32)), model(make_batch(torch.int64)))


def test_build_returns_the_kind_and_the_embedding_dim() -> None:
    assert isinstance(build_stage_model("dssm", SCHEMA, model=CLEAN), DSSM)
    assert isinstance(build_stage_model("mlp", SCHEMA, model=CLEAN), MLP)
    model = build_stage_model("din", SCHEMA, embedding_dim=4, model=CLEAN)
    assert isinstance(model, DIN)
    assert all(group.table.embedding_dim == 4 for group in field_groups(model))


@pytest.mark.parametrize("kind", STAGE_MODELS)
def test_one_table_per_field_in_schema_order(kind: str) -> None:
    model = build_stage_model(kind, SCHEMA, model=CLEAN)
    fields = SCHEMA.context_fields + SCHEMA.item_fields + SCHEMA.candidate_fields
    tables = field_weights(model)
    assert list(tables) == [name for name, _ in fields]
    for name, vocab in fields:
        weight, rows = tables[name]
        assert weight[rows].shape == (vocab, 8)
    for group in field_groups(model):  # the fields' tables tile their matrix, in order
        bounds = [0] + [group.field_rows(n).stop for n in group.names]
        assert [group.field_rows(n).start for n in group.names] == bounds[:-1]
        assert bounds[-1] == group.table.num_embeddings
        # Every table is initialised alike: N(0, EMBEDDING_INIT_STD²).
        std = group.table.weight.std().item()
        assert abs(std - EMBEDDING_INIT_STD) < 0.1 * EMBEDDING_INIT_STD


def test_lookups_equal_one_table_per_field() -> None:
    """The stored matrix behaves as separate tables, concatenated field by field."""
    model = make_model("din")
    emb, batch, tables = model.embeddings, make_batch(torch.int32), field_weights(model)

    def reference(ids: torch.Tensor, names: list[str]) -> torch.Tensor:
        per_field = []
        for i, name in enumerate(names[: ids.shape[-1]]):
            weight, rows = tables[name]
            per_field.append(weight[rows][ids[..., i].long()])
        return torch.cat(per_field, dim=-1)

    context_names = [n for n, _ in SCHEMA.context_fields]
    item_names = [n for n, _ in SCHEMA.item_fields + SCHEMA.candidate_fields]
    torch.testing.assert_close(emb.context_input(batch), reference(batch.context, context_names))
    torch.testing.assert_close(emb.sequence_input(batch), reference(batch.sequence, item_names))
    torch.testing.assert_close(emb.candidate_input(batch), reference(batch.candidates, item_names))


@pytest.mark.parametrize("kind", STAGE_MODELS)
def test_an_id_outside_its_fields_vocabulary_is_rejected(kind: str) -> None:
    batch = make_batch()
    model = build_stage_model(kind, SCHEMA, model=CLEAN)
    # Both would silently read a neighbouring field's rows of the stored matrix.
    candidates = batch.candidates.clone()
    candidates[0, 0, 1] = 45  # author_id has ids 0..44; row 45 is category's first
    with pytest.raises(CascbenchError, match="author_id"):
        model(with_candidates(batch, candidates))
    context = batch.context.clone()
    context[1, 1] = -1  # hour's row -1 is weekday's last
    with pytest.raises(CascbenchError, match="hour"):
        model(Batch(context, batch.sequence, batch.sequence_mask, batch.candidates, batch.targets))


def test_unknown_kind_names_the_valid_ones() -> None:
    with pytest.raises(CascbenchError) as error:
        build_stage_model("dinn", SCHEMA, model=CLEAN)
    for kind in STAGE_MODELS:
        assert repr(kind) in str(error.value) or kind in str(error.value)


def test_a_batch_of_another_schema_is_rejected() -> None:
    batch = make_batch()
    with pytest.raises(CascbenchError, match="candidates"):
        build_stage_model("dssm", SCHEMA, model=CLEAN)(
            with_candidates(batch, batch.candidates[..., :3])
        )


def test_models_share_no_parameters() -> None:
    a, b = (
        build_stage_model("din", SCHEMA, model=CLEAN),
        build_stage_model("din", SCHEMA, model=CLEAN),
    )
    ids_a = {p.data_ptr() for p in a.parameters()}
    assert not ids_a & {p.data_ptr() for p in b.parameters()}


# DIN: the split attention is the concatenated one


def test_din_split_attention_equals_concatenated() -> None:
    model = make_model("din", torch.float64)
    batch = make_batch()
    sequence = model.embeddings.sequence_input(batch).detach().requires_grad_()
    items = model.embeddings.candidate_input(batch)[..., : model.embeddings.item_width]
    items = items.detach().requires_grad_()

    split = model.attention_logits(sequence, items)
    concatenated = reference_attention_logits(model, sequence, items)
    assert split.shape == (B, N, L)
    torch.testing.assert_close(split, concatenated)

    upstream = torch.randn(B, N, L, dtype=torch.float64)
    inputs = [sequence, items, *model.attention.parameters()]
    got = torch.autograd.grad(split, inputs, upstream)
    want = torch.autograd.grad(concatenated, inputs, upstream)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_din_scores_and_gradients_equal_the_concatenated_form() -> None:
    model = make_model("din", torch.float64)
    batch = make_batch()
    scores, reference = model(batch), reference_din_scores(model, batch)
    torch.testing.assert_close(scores, reference)

    upstream = torch.randn(B, N, dtype=torch.float64)
    params = list(model.parameters())
    for g, w in zip(
        torch.autograd.grad(scores, params, upstream),
        torch.autograd.grad(reference, params, upstream),
        strict=True,
    ):
        torch.testing.assert_close(g, w)


def test_din_attention_in_cpu_blocks_equals_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model("din", torch.float64)
    batch = make_batch()
    params = list(model.parameters())
    whole = model(batch)
    whole_grads = torch.autograd.grad(whole.sum(), params)
    monkeypatch.setattr("cascbench.models.din._CPU_BLOCK_ELEMENTS", 1)  # one request per block
    blocked = model(batch)
    torch.testing.assert_close(blocked, whole)
    for g, w in zip(torch.autograd.grad(blocked.sum(), params), whole_grads, strict=True):
        torch.testing.assert_close(g, w)


def test_attention_logits_function_passes_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    sequence = torch.randn(2, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    items = torch.randn(2, 3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(5, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(_AttentionLogits.apply, (sequence, items, weight))


def test_mlp_split_first_layer_equals_concatenated() -> None:
    model = make_model("mlp", torch.float64)
    batch = make_batch()
    torch.testing.assert_close(model(batch), reference_mlp_scores(model, batch))


# Masking


@pytest.mark.parametrize("kind", STAGE_MODELS)
def test_ids_at_padded_positions_do_not_matter(kind: str) -> None:
    model = make_model(kind)
    batch = make_batch()
    scores = model(batch)
    noise = torch.randint_like(batch.sequence, 1, 30)
    padded = ~batch.sequence_mask.unsqueeze(-1)
    changed = model(with_sequence(batch, torch.where(padded, noise, batch.sequence)))
    torch.testing.assert_close(changed, scores)
    # The check is sensitive: the same change at valid positions moves the scores.
    moved = model(with_sequence(batch, torch.where(padded, batch.sequence, noise)))
    assert not torch.allclose(moved[1:], scores[1:])


@pytest.mark.parametrize("kind", STAGE_MODELS)
def test_a_request_without_valid_positions_has_finite_scores_and_gradients(kind: str) -> None:
    model = make_model(kind)
    batch = make_batch()
    assert not batch.sequence_mask[0].any()
    scores = model(batch)
    assert torch.isfinite(scores).all()
    scores[0].sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_din_interest_is_zero_without_valid_positions() -> None:
    model = make_model("din")
    batch = make_batch()
    emb = model.embeddings
    items = emb.candidate_input(batch)[..., : emb.item_width]
    interest = model.interest(emb.sequence_input(batch), batch.sequence_mask, items)
    assert torch.equal(interest[0], torch.zeros_like(interest[0]))
    assert interest[1:].abs().sum(-1).gt(0).all()


def test_masked_mean() -> None:
    values = torch.arange(12.0).view(2, 3, 2)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    torch.testing.assert_close(masked_mean(values, mask), torch.tensor([[2.0, 3.0], [0.0, 0.0]]))


# DSSM towers


def test_dssm_score_is_the_dot_product_of_its_towers() -> None:
    model = make_model("dssm")
    batch = make_batch()
    user, items = model.user_tower(batch), model.item_tower(batch)
    assert user.shape == (B, 32) and items.shape == (B, N, 32)
    torch.testing.assert_close(model(batch), torch.einsum("bd,bnd->bn", user, items))
    # The last layer of each tower is linear: a final ReLU would make every score >= 0.
    assert (user < 0).any() and (items < 0).any()


def test_dssm_towers_see_only_their_own_side() -> None:
    model = make_model("dssm")
    batch, other = make_batch(seed=0), make_batch(seed=1)
    torch.testing.assert_close(
        model.user_tower(with_candidates(batch, other.candidates)), model.user_tower(batch)
    )
    swapped_user = Batch(
        other.context, other.sequence, other.sequence_mask, batch.candidates, batch.targets
    )
    torch.testing.assert_close(model.item_tower(swapped_user), model.item_tower(batch))


# Candidates are scored independently of their slot


@pytest.mark.parametrize("kind", STAGE_MODELS)
def test_permuting_candidates_permutes_scores(kind: str) -> None:
    model = make_model(kind)
    batch = make_batch()
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(3))
    scores = model(batch)
    permuted = model(with_candidates(batch, batch.candidates[:, perm]))
    torch.testing.assert_close(permuted, scores[:, perm])
    assert not torch.allclose(scores[:, perm], scores)  # the permutation changes something


# Gradients


@pytest.mark.parametrize("kind", STAGE_MODELS)
def test_gradients_reach_every_embedding_table(kind: str) -> None:
    model = make_model(kind)
    batch = make_batch()
    model(batch).sum().backward()
    for name, (weight, rows) in field_weights(model).items():
        assert weight.grad is not None, name
        assert weight.grad[rows].abs().sum() > 0, name
    for name, p in model.named_parameters():
        assert p.grad is not None, name
