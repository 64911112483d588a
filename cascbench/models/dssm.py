"""DSSM, the retrieval stage: a user tower and an item tower scored by a dot product (SPEC §6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cascbench.batch import Batch
from cascbench.data import FeatureSchema
from cascbench.models.config import ModelConfig
from cascbench.models.embedding import FeedForward, StageEmbeddings


class DSSM(nn.Module):
    """Two towers; score[b, n] = user_tower(b) · item_tower(b, n).

    User tower: [context embeddings ‖ pooled sequence embeddings (`StageEmbeddings.user_input`)]
    -> MLP.
    Item tower: [candidate item-field embeddings ‖ candidate-only field embeddings] -> MLP.
    The towers never see each other, so item vectors can be precomputed for retrieval.
    """

    def __init__(
        self,
        schema: FeatureSchema,
        embedding_dim: int = 8,
        hidden: Sequence[int] = (128, 64, 32),
        model: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        self.embeddings = StageEmbeddings(schema, embedding_dim, model)
        user_width = self.embeddings.context_width + self.embeddings.item_width
        self.user_mlp = FeedForward([user_width, *hidden])
        self.item_mlp = FeedForward([self.embeddings.candidate_width, *hidden])

    def user_tower(self, batch: Batch) -> torch.Tensor:
        """[B, D], D = the last hidden size."""
        return self.user_mlp(self.embeddings.user_input(batch))

    def item_tower(self, batch: Batch) -> torch.Tensor:
        """[B, N, D]."""
        return self.item_mlp(self.embeddings.candidate_input(batch))

    def forward(self, batch: Batch) -> torch.Tensor:
        """float [B, N] scores."""
        sequence, candidates = self.embeddings.item_inputs(batch)
        user = self.user_mlp(self.embeddings.user_input(batch, sequence))
        items = self.item_mlp(candidates)
        # A product and a sum, not bmm: on CPU, bmm of [N, D] x [D, 1] blocks loops over requests.
        return (items * user.unsqueeze(1)).sum(-1)
