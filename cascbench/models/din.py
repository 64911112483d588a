"""DIN, the ranking stage: each candidate attends over the behaviour sequence (SPEC §6)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable

from cascbench.batch import Batch
from cascbench.data import FeatureSchema
from cascbench.models.config import ModelConfig
from cascbench.models.embedding import FeedForward, StageEmbeddings, split_linear


class DIN(nn.Module):
    """Deep Interest Network with target attention.

    a[b, n, l] = MLP_att([s_l ‖ c_n]) (one ReLU hidden layer, one logit) over the valid positions l,
    softmax over l; interest[b, n] = Σ_l softmax(a)[b, n, l] · s_l;
    score[b, n] = MLP([context ‖ interest ‖ candidate item fields ‖ candidate-only fields]).
    s_l: a sequence item's F field embeddings; c_n: the candidate's F item-field embeddings.
    """

    def __init__(
        self,
        schema: FeatureSchema,
        embedding_dim: int = 8,
        attention_hidden: int = 80,
        hidden: Sequence[int] = (128, 128, 32),
        model: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        self.embeddings = StageEmbeddings(schema, embedding_dim, model)
        emb = self.embeddings
        # Linear(2 F d, H), ReLU, Linear(H, 1) on [s ‖ c]; `attention_logits` evaluates it split.
        self.attention = FeedForward([2 * emb.item_width, attention_hidden, 1])
        width = emb.context_width + emb.item_width + emb.candidate_width
        self.head = FeedForward([width, *hidden, 1])

    def attention_logits(self, sequence: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """a before masking: sequence [B, L, F d], items [B, N, F d] -> [B, N, L].

        W·[s ‖ c] + b = W_s·s + (W_c·c + b): the first layer runs once per (request, position) and
        once per candidate, and only their broadcast sum is [B, N, L, H], inside `_AttentionLogits`.
        """
        hidden_layer, output_layer = self.attention[0], self.attention[-1]
        sequence_share, item_share = split_linear(hidden_layer, [sequence, items])
        weight = output_layer.weight.view(-1)
        if torch.compiler.is_compiling():
            return (
                _compiled_attention_logits(sequence_share, item_share, weight) + output_layer.bias
            )
        rows = _rows_per_block(sequence_share, item_share)
        blocks = [
            _AttentionLogits.apply(sequence_share[i : i + rows], item_share[i : i + rows], weight)
            for i in range(0, sequence_share.shape[0], rows)
        ]
        logits = blocks[0] if len(blocks) == 1 else torch.cat(blocks)
        return logits + output_layer.bias

    def interest(
        self, sequence: torch.Tensor, sequence_mask: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        """The attention-pooled sequence of each candidate -> [B, N, F d].

        sequence [B, L, F d], sequence_mask bool [B, L], items [B, N, F d] (candidate item fields).

        Padded positions are filled with the lowest finite value before the softmax (not -inf, whose
        softmax is NaN on a request with no valid position) and their weights then zeroed, so such a
        request gets a zero interest and finite gradients.
        """
        logits = self.attention_logits(sequence, items)
        valid = sequence_mask.unsqueeze(1)  # [B, 1, L]
        logits = logits.masked_fill(~valid, torch.finfo(logits.dtype).min)
        weights = torch.softmax(logits, dim=-1) * valid
        return torch.bmm(weights, sequence)

    def forward(self, batch: Batch) -> torch.Tensor:
        """float [B, N] scores."""
        emb = self.embeddings
        context = emb.context_input(batch).unsqueeze(1)  # [B, 1, C d]
        # sequence [B, L, F d]; candidates [B, N, (F + E) d], item fields first
        sequence, candidates = emb.item_inputs(batch)
        interest = self.interest(sequence, batch.sequence_mask, candidates[..., : emb.item_width])
        # The context share of the first layer is computed once per request.
        return self.head.forward_parts([context, interest, candidates]).squeeze(-1)


class _AttentionLogits(torch.autograd.Function):
    """logits[b, n, l] = w · relu(sequence[b, l] + items[b, n]): [B, L, H], [B, N, H] -> [B, N, L].

    Plain autograd would keep the [B, N, L, H] ReLU output for the backward pass and allocate two
    more such tensors in it (its gradient and the pre-activation's); at B=1024, N=40, L=50, H=80
    each is 655 MB. Here the forward keeps only the two small inputs, and the backward recomputes
    the hidden tensor (one add and one ReLU) and turns it into the pre-activation's gradient in
    place: one [B, N, L, H] tensor alive at a time.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, sequence: torch.Tensor, items: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(sequence, items, weight)
        hidden = _hidden(sequence, items)
        return hidden @ weight.to(hidden.dtype)

    @staticmethod
    @once_differentiable
    def backward(
        ctx: FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        sequence, items, weight = ctx.saved_tensors  # type: ignore[attr-defined]
        hidden = _hidden(sequence, items)  # [B, N, L, H]
        grad = grad.to(hidden.dtype)
        grad_weight = None
        if ctx.needs_input_grad[2]:  # type: ignore[attr-defined]
            grad_weight = (grad.reshape(1, -1) @ hidden.reshape(-1, hidden.shape[-1])).view(-1)
            grad_weight = grad_weight.to(weight.dtype)
        # d logit / d pre-activation = w · 1[pre-activation > 0]; relu(x) > 0 iff x > 0, so
        # sign(relu output) is the indicator. w is the same for every (b, n, l): it multiplies the
        # sums over n and over l instead of the [B, N, L, H] tensor, one pass less.
        grad_pre = hidden.sign_().mul_(grad.unsqueeze(-1))  # 1[pre-activation > 0] · grad
        weight = weight.to(hidden.dtype)
        return grad_pre.sum(1) * weight, grad_pre.sum(2) * weight, grad_weight


# On the CPU a whole batch's [B, N, L, H] block is hundreds of MB, which the allocator maps and
# unmaps at every step (page faults took a fifth of DIN's time); blocks of at most 32 MiB are
# reused and stay closer to the caches. A GPU gains nothing from blocks and runs the batch at once.
_CPU_BLOCK_ELEMENTS = 2**23


def _rows_per_block(sequence: torch.Tensor, items: torch.Tensor) -> int:
    """Requests per attention block: [B, L, H], [B, N, H] -> rows of at most 2**23 elements."""
    batch, length, hidden = sequence.shape
    if sequence.device.type != "cpu":
        return max(batch, 1)
    return max(1, _CPU_BLOCK_ELEMENTS // (items.shape[1] * length * hidden))


# Compiled alone, the attention's add, ReLU and weighted sum become one loop that never stores
# [B, N, L, H], forward and backward: 7-10x faster than `_AttentionLogits` on a CPU. Compiled with
# the rest of DIN, the compiler fused the softmax's backward into it, stored the [B, N, L, H]
# gradient and reduced it over h with two threads: slower than eager. Hence a graph of its own,
# called from the compiled model across a graph break.
@torch.compiler.disable
def _compiled_attention_logits(
    sequence: torch.Tensor, items: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """`_AttentionLogits` without the output bias, compiled: [B, L, H], [B, N, H], [H] -> [B, N, L]."""
    return _attention_graph()(sequence, items, weight)


@functools.cache
def _attention_graph() -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    def logits(sequence: torch.Tensor, items: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return (_hidden(sequence, items) * weight).sum(-1)

    return torch.compile(logits, dynamic=True)


def _hidden(sequence: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """relu(sequence[:, None] + items[:, :, None]): [B, L, H], [B, N, H] -> [B, N, L, H]."""
    return torch.add(items.unsqueeze(2), sequence.unsqueeze(1)).relu_()
