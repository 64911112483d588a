"""The stage models' reference mode (SPEC §6.1) against loop versions written from the spec: the
padding rows, category_level_one's unshifted ids, DSSM's sum over every sequence row; the padding
rows stay zero while training; each training day's last partial batch is dropped."""

from __future__ import annotations

import itertools

import pytest
import torch

from cascbench.batch import Batch, Targets
from cascbench.data import FeatureSchema
from cascbench.datasets import load_dataset
from cascbench.datasets.config import DatasetConfig
from cascbench.errors import CascbenchError
from cascbench.models import ModelConfig, build_stage_model
from cascbench.models.config import CLEAN_MODEL
from cascbench.settings import get_setting
from cascbench.train import fit
from cascbench.train_config import TrainConfig

# RecFlow's field names (category_level_one among the item fields), small vocabularies.
SCHEMA = FeatureSchema(
    context_fields=(("weekday", 8), ("hour", 25), ("user_id", 9)),
    item_fields=(
        ("video_id", 12),
        ("author_id", 7),
        ("category_level_two", 6),
        ("category_level_one", 5),
        ("upload_type", 4),
    ),
    candidate_fields=(("upload_weekday", 8), ("upload_hour", 25)),
)
B, N, L = 3, 4, 5
LEVEL_ONE = 3  # its column among the item fields
REFERENCE = ModelConfig()
OPTIONS = [
    REFERENCE,
    ModelConfig(**CLEAN_MODEL),
    ModelConfig(padding="trained"),  # unshifted ids, no frozen row
    ModelConfig(category_level_one="shifted"),
    ModelConfig(sequence_pooling="masked_mean", embedding_init="small"),
]


def make_batch(seed: int = 0) -> Batch:
    """Canonical ids (raw + 1, 0 = padding): padded sequence rows and candidate slots are all 0,
    as the readers write them; request 0 has no valid sequence row; level-one ids 1 and 3 (raw 0
    and 2) appear on real items."""
    g = torch.Generator().manual_seed(seed)

    def ids(fields, *shape):
        return torch.cat([torch.randint(1, v, (*shape, 1), generator=g) for _, v in fields], -1)

    sequence_mask = torch.rand(B, L, generator=g) < 0.6
    sequence_mask[0] = False
    sequence_mask[1, -2:] = True
    mask = torch.rand(B, N, generator=g) < 0.75
    mask[:, 0] = True
    sequence = ids(SCHEMA.item_fields, B, L) * sequence_mask.unsqueeze(-1)
    candidates = ids(SCHEMA.item_fields + SCHEMA.candidate_fields, B, N) * mask.unsqueeze(-1)
    sequence[1, -1, LEVEL_ONE] = 1  # raw category 0: the padded sequence rows' id
    candidates[1, 0, LEVEL_ONE] = 3  # raw category 2: the padded candidates' id
    targets = Targets(torch.zeros(B, N), torch.zeros(B, N, dtype=torch.long), mask)
    return Batch(ids(SCHEMA.context_fields, B), sequence, sequence_mask, candidates, targets)


def make_model(kind: str, model: ModelConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    built = build_stage_model(kind, SCHEMA, model=model).double()
    for group in (built.embeddings.context, built.embeddings.item):  # every row non-zero first,
        with torch.no_grad():  # so that a padding row that is not zeroed shows
            group.table.weight.add_(0.5)
            if group.padding_ids is not None:
                group.table.weight[group.offsets + group.padding_ids] = 0.0
    return built


# The loop versions, from SPEC §6.1: one table per field, one id at a time.


def field_vector(model, group: str, field: int, canonical: int, role: str) -> torch.Tensor:
    """The embedding one id reads. canonical: raw + 1, 0 = padding; role: where the id sits."""
    options = model.embeddings.model
    table = getattr(model.embeddings, group)
    padding = 0
    index = canonical
    if group == "item" and field == LEVEL_ONE and options.category_level_one == "unshifted":
        padding = 2  # the release's padding id of category_level_one
        # a real id stays raw (not shifted); a padded candidate reads 2, a zero sequence row 0
        index = canonical - 1 if canonical > 0 else (2 if role == "candidate" else 0)
    if options.padding == "frozen" and index == padding:
        return torch.zeros(table.dim, dtype=torch.float64)
    rows = table.field_rows(table.names[field])
    return table.table.weight[rows][index]


def loop_context(model, batch: Batch, b: int) -> torch.Tensor:
    return torch.cat(
        [
            field_vector(model, "context", f, int(i), "context")
            for f, i in enumerate(batch.context[b])
        ]
    )


def loop_item(model, ids: torch.Tensor, role: str) -> torch.Tensor:
    return torch.cat([field_vector(model, "item", f, int(i), role) for f, i in enumerate(ids)])


def loop_user(model, batch: Batch, b: int) -> torch.Tensor:
    rows = [loop_item(model, batch.sequence[b, pos], "sequence") for pos in range(L)]
    if model.embeddings.model.sequence_pooling == "sum":
        pooled = sum(rows)  # every row, padded ones included
    else:
        valid = [row for row, ok in zip(rows, batch.sequence_mask[b], strict=True) if ok]
        pooled = sum(valid) / len(valid) if valid else torch.zeros_like(rows[0])
    return torch.cat([loop_context(model, batch, b), pooled])


def loop_scores(kind: str, model, batch: Batch) -> torch.Tensor:
    scores = torch.zeros(B, N, dtype=torch.float64)
    width = model.embeddings.item_width
    for b, n in itertools.product(range(B), range(N)):
        candidate = loop_item(model, batch.candidates[b, n], "candidate")
        if kind == "dssm":
            user = model.user_mlp(loop_user(model, batch, b))
            scores[b, n] = user @ model.item_mlp(candidate)
        elif kind == "mlp":
            scores[b, n] = model.head(torch.cat([loop_user(model, batch, b), candidate]))[0]
        else:  # din: attention over the valid rows only
            logits, values = [], []
            for pos in range(L):
                if batch.sequence_mask[b, pos]:
                    row = loop_item(model, batch.sequence[b, pos], "sequence")
                    logits.append(model.attention(torch.cat([row, candidate[:width]]))[0])
                    values.append(row)
            interest = torch.zeros(width, dtype=torch.float64)
            if logits:
                weights = torch.softmax(torch.stack(logits), 0)
                interest = sum(w * v for w, v in zip(weights, values, strict=True))
            inputs = torch.cat([loop_context(model, batch, b), interest, candidate])
            scores[b, n] = model.head(inputs)[0]
    return scores


@pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: ",".join(map(str, o.model_dump().values()))
)
@pytest.mark.parametrize("kind", ["dssm", "mlp", "din"])
def test_forward_equals_the_loop_version_of_the_spec(kind, options):
    model = make_model(kind, options)
    batch = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(model(batch), loop_scores(kind, model, batch))


def test_reference_sequence_sum_counts_padded_rows_through_category_zero():
    """DSSM's user input: the padded rows are zero except their level-one id 0, a real category."""
    model = make_model("dssm", REFERENCE)
    batch = make_batch()
    emb = model.embeddings
    pooled = emb.user_input(batch)[:, emb.context_width :]
    level_one = emb.item.table.weight[emb.item.field_rows("category_level_one")]
    d = emb.item.dim
    for b in range(B):
        padded = int((~batch.sequence_mask[b]).sum())
        valid = batch.sequence[b, batch.sequence_mask[b], LEVEL_ONE]
        valid_sum = level_one[valid - 1].sum(0)  # raw ids of the valid rows
        got = pooled[b, LEVEL_ONE * d : (LEVEL_ONE + 1) * d]
        torch.testing.assert_close(got, padded * level_one[0] + valid_sum)
        assert padded == 0 or not torch.allclose(got, valid_sum)


def test_reference_init_is_unit_normal_and_clean_init_small():
    reference = build_stage_model("din", SCHEMA, model=REFERENCE).embeddings.item.table.weight
    clean = build_stage_model("din", SCHEMA, model=ModelConfig(**CLEAN_MODEL))
    assert 0.85 < reference[reference != 0].std().item() < 1.15
    assert 0.0085 < clean.embeddings.item.table.weight.std().item() < 0.0115


@pytest.mark.parametrize("kind", ["dssm", "mlp", "din"])
def test_padding_rows_stay_zero_while_training(kind):
    torch.manual_seed(1)
    model = build_stage_model(kind, SCHEMA, model=REFERENCE)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    groups = (model.embeddings.context, model.embeddings.item)
    before = [g.table.weight.detach().clone() for g in groups]
    for seed in range(5):
        batch = make_batch(seed)
        optimizer.zero_grad()
        model(batch).square().mean().backward()
        optimizer.step()
    for group, start in zip(groups, before, strict=True):
        padding_rows = group.offsets + group.padding_ids
        assert torch.equal(group.table.weight[padding_rows], torch.zeros_like(start[padding_rows]))
        assert not torch.equal(group.table.weight, start)  # the other rows did train
    level_one = model.embeddings.item.field_rows("category_level_one")
    assert model.embeddings.item.table.weight[level_one][2].abs().sum() == 0  # its padding id


TINY = DatasetConfig(world="tiny")  # 3 days of 200 requests: 2 training days


def test_each_days_last_partial_batch_is_dropped():
    setting = get_setting("recflow-2stage")
    data = load_dataset(TINY, setting.name)
    dropped = fit(setting, data, "bce", TrainConfig(batch_size=64, device="cpu"), seed=0)
    kept = fit(setting, data, "bce", TrainConfig(batch_size=64, device="cpu", drop_last=False))
    assert len(dropped.curve["step"]) == 2 * (200 // 64)  # 3 full batches a day
    assert dropped.stats["train_requests"] == 2 * 192
    assert len(kept.curve["step"]) == 2 * 4 and kept.stats["train_requests"] == 400
    assert dropped.curve["day"] == [0, 0, 0, 1, 1, 1]


def test_no_full_batch_is_refused_with_what_to_do():
    setting = get_setting("recflow-2stage")
    data = load_dataset(TINY, setting.name)
    with pytest.raises(CascbenchError, match=r"no training batch.*batch_size=1024.*drop_last"):
        fit(setting, data, "bce", TrainConfig(device="cpu"))
