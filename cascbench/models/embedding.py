"""Embedding tables and feed-forward towers shared by the stage models (SPEC §6).

Every stage model owns one `StageEmbeddings`: one table per id field (the tables of a group of
fields are stored as one matrix). Sequence items and candidates share the item-field tables (a video
in the history and the same video as a candidate are one row); stages share nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable

from cascbench.batch import Batch
from cascbench.data import FeatureSchema
from cascbench.errors import CascbenchError
from cascbench.models.config import ModelConfig

#: The release's init: nn.Embedding's default N(0, 1) (SPEC §6.1).
REFERENCE_INIT_STD = 1.0
# The clean option `embedding_init="small"`. A small normal init keeps an id that training rarely
# or never updates (one pass over millions of videos: most rows get a handful of updates,
# test-day videos none) close to a neutral zero vector instead of unit-variance noise that would
# swamp the other fields. 0.01 is about one Adam step at the paper's lr (0.01), so a row leaves
# its init as soon as it is trained. It also starts DIN's attention near uniform (mean pooling)
# and every stage near a constant score.
EMBEDDING_INIT_STD = 0.01


class FieldEmbeddings(nn.Module):
    """The embedding tables of several id fields, stored as one matrix.

    Field i owns rows offsets[i] .. offsets[i] + vocab[i] - 1, initialised like a table of its own:
    mathematically one `nn.Embedding(vocab[i], dim)` per field. Stored together, a lookup of k
    fields is one gather forward and one scatter backward instead of k of each, and needs no
    concatenation. At paper sizes DSSM's and MLP's forward + backward on a GPU are bound by
    launching kernels, and this cuts their time 2-3x.

    padding_ids: each field's padding id, whose row is zero and never trained (nn.Embedding's
    `padding_idx`: the looked-up vector is multiplied by 0, so the row's gradient is exactly 0 and
    Adam never moves it). None: every id, 0 included, is an ordinary trained row.
    """

    def __init__(
        self,
        fields: Sequence[tuple[str, int]],
        dim: int,
        *,
        init_std: float = EMBEDDING_INIT_STD,
        padding_ids: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.names = tuple(name for name, _ in fields)
        self.dim = dim
        vocab = torch.tensor([size for _, size in fields], dtype=torch.long)
        self.register_buffer("vocab", vocab, persistent=False)
        self.register_buffer("offsets", torch.cumsum(vocab, 0) - vocab, persistent=False)
        self.table = nn.Embedding(int(vocab.sum()), dim)
        #: Set by `use_sparse_gradients`: the table's gradient is then a sparse tensor of the
        #: looked-up rows, for a lazy optimizer (train.optimizer="sparse_adam").
        self.sparse_gradient = False
        # Drawn again even at torch's own std of 1: every init option then consumes the same
        # random numbers, and the layers built after the tables start alike.
        nn.init.normal_(self.table.weight, std=init_std)
        padding = None if padding_ids is None else torch.tensor(padding_ids, dtype=torch.long)
        self.register_buffer("padding_ids", padding, persistent=False)
        if padding is not None:
            with torch.no_grad():
                self.table.weight[self.offsets + padding] = 0.0

    def field_rows(self, name: str) -> slice:
        """The rows of `self.table.weight` that hold field `name`'s table."""
        i = self.names.index(name)
        start = int(self.offsets[i])
        return slice(start, start + int(self.vocab[i]))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: int32/int64 [..., k], the first k fields in order. Returns float [..., k * dim]."""
        return self.lookup(ids)[0]

    # Run eagerly under torch.compile: compiled, the table's gradient is a scatter whose parallel
    # atomic additions make the rounding, and so a run's numbers, vary from run to run.
    @torch.compiler.disable
    def lookup(self, *ids: torch.Tensor) -> list[torch.Tensor]:
        """Several id arrays [..., k_i] (the first k_i fields each) in one gather -> [..., k_i * dim].

        One gather means one gradient of the table in the backward pass: with the sequence and
        the candidates looked up apart, the table's dense gradient was built twice and summed.
        """
        rows = []
        for part in ids:
            k = part.shape[-1]
            _check_ids(part, self.vocab[:k], self.names[:k])
            rows.append((part + self.offsets[:k]).reshape(-1))
        flat = rows[0] if len(rows) == 1 else torch.cat(rows)
        vectors = _gather_rows(self.table.weight, flat, self.sparse_gradient)
        vectors = vectors.split([r.numel() for r in rows])
        if self.padding_ids is not None:
            vectors = [
                (
                    v.view(*part.shape, self.dim)
                    * (part != self.padding_ids[: part.shape[-1]])[..., None]
                )
                for v, part in zip(vectors, ids, strict=True)
            ]
        return [v.reshape(*part.shape[:-1], -1) for v, part in zip(vectors, ids, strict=True)]


def use_sparse_gradients(module: nn.Module) -> list[nn.Parameter]:
    """Give every embedding table under `module` sparse gradients (the looked-up rows only);
    returns the tables' weights, for an optimizer of sparse gradients (torch's SparseAdam).
    Their gradients must then be dropped between steps (zero_grad(set_to_none=True))."""
    tables = [m for m in module.modules() if isinstance(m, FieldEmbeddings)]
    for table in tables:
        table.sparse_gradient = True
    return [table.table.weight for table in tables]


def _gather_rows(weight: torch.Tensor, rows: torch.Tensor, sparse: bool = False) -> torch.Tensor:
    """weight[rows]: [V, d], int64 [M] -> [M, d], with the fastest exact backward per device;
    sparse: the weight's gradient is a sparse COO tensor of the M rows (uncoalesced)."""
    if weight.device.type == "cpu":
        return _CPUGatherRows.apply(weight, rows, sparse)
    return nn.functional.embedding(rows, weight, sparse=sparse)


class _CPUGatherRows(torch.autograd.Function):
    """weight[rows] whose backward adds the rows' gradients with one `index_add_`.

    On the CPU, torch's embedding backward has every thread scan every index and add each row with
    a separate kernel call; `index_add_` adds them in one pass, in index order (deterministic),
    2-3x faster at the paper's batch. Same gradient up to the order of floating-point additions.

    When the table already has a gradient (zeroed in place between steps, as `train` does), the
    rows are added into it and no [V, d] gradient is allocated: at RecFlow's 9M videos a fresh one
    per step cost a fifth of a second of page faults. With `sparse`, the gradient is the rows'
    sparse tensor, as nn.Embedding(sparse=True) gives.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, weight: torch.Tensor, rows: torch.Tensor, sparse: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(rows)
        ctx.weight = weight  # type: ignore[attr-defined]
        ctx.sparse = sparse  # type: ignore[attr-defined]
        return weight.index_select(0, rows)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (rows,) = ctx.saved_tensors  # type: ignore[attr-defined]
        weight = ctx.weight  # type: ignore[attr-defined]
        if ctx.sparse:  # type: ignore[attr-defined]
            # Valid by construction (every id was checked against its vocabulary in `lookup`).
            gradient = torch.sparse_coo_tensor(
                rows.unsqueeze(0), grad, weight.shape, check_invariants=False
            )
            return gradient, None, None
        existing = weight.grad if weight.is_leaf else None
        if existing is not None and existing.layout == torch.strided:
            existing.index_add_(0, rows, grad)
            return None, None, None  # already accumulated: autograd has nothing left to add
        return grad.new_zeros(weight.shape).index_add_(0, rows, grad), None, None


def _check_ids(ids: torch.Tensor, vocab: torch.Tensor, names: tuple[str, ...]) -> None:
    """Fail on an id outside its field's vocabulary.

    In one matrix such an id would silently read another field's rows, where a table of its own
    would fail; this keeps that failure. One min/max pass per field: comparing every id with its
    bound built three id-sized temporaries, a twentieth of a CPU training step.
    """
    if ids.numel() == 0:
        return
    low, high = torch.aminmax(ids.reshape(-1, len(names)), dim=0)
    in_range = (low >= 0) & (high < vocab)
    if ids.device.type != "cpu":
        # Asserted on the device, as nn.Embedding does: a host-side check would stall the GPU.
        torch._assert_async(in_range.all(), "an id is outside its field's vocabulary")
    elif not in_range.all():
        bad = [name for name, ok in zip(names, in_range.tolist(), strict=True) if not ok]
        raise CascbenchError(
            f"ids outside the vocabulary of field(s) {bad} (sizes {vocab.tolist()} for "
            f"{list(names)}): the FeatureSchema does not match the data."
        )


#: The field whose ids the release keeps unshifted (SPEC §6.1), and its ids for padding there.
LEVEL_ONE = "category_level_one"
LEVEL_ONE_PADDING = {"candidate": 2, "sequence": 0}


class StageEmbeddings(nn.Module):
    """The id tables of one stage model: context fields, item fields and candidate-only fields.

    model: the reference choices of the release or clean options (`ModelConfig`): the init, the
    padding rows, the pooling of the sequence in `user_input`, and category_level_one's ids.
    """

    def __init__(self, schema: FeatureSchema, dim: int, model: ModelConfig | None = None) -> None:
        super().__init__()
        self.schema = schema
        self.model = model = model or ModelConfig()
        item_fields = schema.item_fields + schema.candidate_fields
        names = [name for name, _ in item_fields]
        # Item fields first, so a sequence [.., F] uses the first F tables and a candidate
        # [.., F + E] all of them, in the array column order.
        self.level_one = (
            names.index(LEVEL_ONE)
            if model.category_level_one == "unshifted" and LEVEL_ONE in names[: schema.n_item]
            else None
        )
        init_std = REFERENCE_INIT_STD if model.embedding_init == "normal" else EMBEDDING_INIT_STD
        frozen = model.padding == "frozen"
        item_padding = [0] * len(names)
        if self.level_one is not None:
            item_padding[self.level_one] = LEVEL_ONE_PADDING["candidate"]
        self.context = FieldEmbeddings(
            schema.context_fields,
            dim,
            init_std=init_std,
            padding_ids=[0] * schema.n_context if frozen else None,
        )
        self.item = FieldEmbeddings(
            item_fields, dim, init_std=init_std, padding_ids=item_padding if frozen else None
        )

    def _item_ids(self, ids: torch.Tensor, role: str) -> torch.Tensor:
        """The ids the tables see: with unshifted category_level_one, its canonical id c (raw + 1,
        0 = padding) becomes the raw id c - 1, and padding the release's id for `role`."""
        if self.level_one is None:
            return ids
        column = ids[..., self.level_one]
        release = torch.where(column > 0, column - 1, LEVEL_ONE_PADDING[role])
        return torch.cat(
            [ids[..., : self.level_one], release.unsqueeze(-1), ids[..., self.level_one + 1 :]],
            dim=-1,
        )

    @property
    def context_width(self) -> int:
        """C * d."""
        return self.schema.n_context * self.context.dim

    @property
    def item_width(self) -> int:
        """F * d: one sequence item, or the item fields of a candidate."""
        return self.schema.n_item * self.item.dim

    @property
    def candidate_width(self) -> int:
        """(F + E) * d."""
        return self.schema.n_candidate * self.item.dim

    def context_input(self, batch: Batch) -> torch.Tensor:
        """[B, C * d]."""
        _check_width("context", batch.context, self.schema.n_context)
        return self.context(batch.context)

    def sequence_input(self, batch: Batch) -> torch.Tensor:
        """[B, L, F * d], padded positions included (mask them with `batch.sequence_mask`)."""
        _check_width("sequence", batch.sequence, self.schema.n_item)
        _check_sequence_mask(batch)
        return self.item(self._item_ids(batch.sequence, "sequence"))

    def candidate_input(self, batch: Batch) -> torch.Tensor:
        """[B, N, (F + E) * d]: the item fields' embeddings, then the candidate-only fields'."""
        _check_width("candidates", batch.candidates, self.schema.n_candidate)
        return self.item(self._item_ids(batch.candidates, "candidate"))

    def item_inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(`sequence_input`, `candidate_input`) of the batch from one gather of the item table."""
        _check_width("sequence", batch.sequence, self.schema.n_item)
        _check_width("candidates", batch.candidates, self.schema.n_candidate)
        _check_sequence_mask(batch)
        sequence, candidates = self.item.lookup(
            self._item_ids(batch.sequence, "sequence"),
            self._item_ids(batch.candidates, "candidate"),
        )
        return sequence, candidates

    def user_input(self, batch: Batch, sequence: torch.Tensor | None = None) -> torch.Tensor:
        """[B, (C + F) * d]: context embeddings ‖ the pooled sequence: the sum of all L rows'
        embeddings, padded rows included (reference), or the mean of the valid rows'.

        sequence: the batch's `sequence_input` when the caller already has it.
        """
        if sequence is None:
            sequence = self.sequence_input(batch)
        if self.model.sequence_pooling == "sum":
            pooled = sequence.sum(1)
        else:
            pooled = masked_mean(sequence, batch.sequence_mask)
        return torch.cat([self.context_input(batch), pooled], dim=-1)


def _check_sequence_mask(batch: Batch) -> None:
    if batch.sequence_mask.shape != batch.sequence.shape[:-1]:
        raise CascbenchError(
            f"sequence_mask has shape {tuple(batch.sequence_mask.shape)}, expected "
            f"{tuple(batch.sequence.shape[:-1])} (the sequence's [B, L])."
        )


def _check_width(name: str, ids: torch.Tensor, expected: int) -> None:
    if ids.shape[-1] != expected:
        raise CascbenchError(
            f"batch.{name} has {ids.shape[-1]} id fields (shape {tuple(ids.shape)}); the model's "
            f"FeatureSchema has {expected}."
        )


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid positions: values [B, L, D], mask bool [B, L] -> [B, D].

    A row with no valid position gets zeros (the count is clamped to 1), never NaN.
    """
    weights = mask.to(values.dtype).unsqueeze(1)  # [B, 1, L]
    total = torch.bmm(weights, values).squeeze(1)  # masked sum without a [B, L, D] temporary
    return total / weights.sum(-1).clamp(min=1.0)


def split_linear(layer: nn.Linear, parts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each part's share of `layer(torch.cat(parts, -1))`, without building the concatenation.

    W·[x_1 ‖ … ‖ x_k] + b = Σ_i W_i·x_i + b, where W_i are the columns of W that x_i meets. Parts
    may have different broadcastable leading shapes (e.g. a request part [B, 1, a] and a candidate
    part [B, N, c]): each is projected at its own size, and the shares sum, broadcasting, to the
    full output. The bias goes to the smallest share, where adding it costs least.
    """
    widths = [part.shape[-1] for part in parts]
    if sum(widths) != layer.in_features:
        raise CascbenchError(
            f"split_linear: parts of widths {widths} sum to {sum(widths)}, the layer takes "
            f"{layer.in_features}."
        )
    weights = torch.split(layer.weight, widths, dim=1)
    sizes = [part.numel() for part in parts]
    smallest = sizes.index(min(sizes))  # not min(key=...), which torch.compile cannot trace
    return [
        nn.functional.linear(part, weight, layer.bias if i == smallest else None)
        for i, (part, weight) in enumerate(zip(parts, weights, strict=True))
    ]


class FeedForward(nn.Sequential):
    """Linear layers of the given sizes (input size first) with ReLU between them.

    The last layer is linear: a tower's output feeds a dot product or is a logit, and a final ReLU
    would clip it to be non-negative. Linear layers keep torch's default init.
    """

    def __init__(self, sizes: Sequence[int]) -> None:
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            if i > 0:
                # In place is safe: a Linear's backward needs its input, not its output.
                layers.append(nn.ReLU(inplace=True))
            layers.append(nn.Linear(fan_in, fan_out))
        super().__init__(*layers)

    def forward_parts(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """Same as `self(torch.cat(broadcast parts, -1))`, with the first layer split per part.

        A part shared by all candidates of a request ([B, 1, a]) is then projected once per
        request instead of once per candidate.
        """
        shares = split_linear(self[0], parts)
        hidden = shares[0]
        for share in shares[1:]:
            hidden = hidden + share
        for layer in list(self)[1:]:
            hidden = layer(hidden)
        return hidden
