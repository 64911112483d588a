"""MLP, the pre-ranking stage of three-stage cascades (SPEC §6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cascbench.batch import Batch
from cascbench.data import FeatureSchema
from cascbench.models.config import ModelConfig
from cascbench.models.embedding import FeedForward, StageEmbeddings


class MLP(nn.Module):
    """score = MLP([DSSM's user input ‖ candidate input]) with hidden sizes 128-64-32 and one logit.

    User input: context embeddings ‖ pooled sequence embeddings (as DSSM's); candidate input:
    item-field ‖ candidate-only field embeddings. Unlike DSSM, the user and the candidate interact
    from the first layer on.
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
        width = (
            self.embeddings.context_width
            + self.embeddings.item_width
            + self.embeddings.candidate_width
        )
        self.head = FeedForward([width, *hidden, 1])

    def forward(self, batch: Batch) -> torch.Tensor:
        """float [B, N] scores."""
        sequence, candidates = self.embeddings.item_inputs(batch)  # candidates [B, N, (F + E) d]
        user = self.embeddings.user_input(batch, sequence).unsqueeze(1)  # [B, 1, (C + F) d]
        # The first layer projects the user part once per request, not once per candidate.
        return self.head.forward_parts([user, candidates]).squeeze(-1)
