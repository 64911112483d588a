"""The true utility of every candidate in a request's pool.

4. True utility = dot_weight * <user, item> (what a two-tower model represents)
   + interaction_weight * max cosine similarity between the candidate and the sequence items (what
   target attention captures), compared on their niches (latent minus the level-one centre: the
   level-two and item-level taste that the user vector, built from level-one interests, does not
   hold) + quality_weight * item quality + hidden_weight * hidden + noise_std * noise. The three
   signal parts are standardised (global mean, pooled within-request std), so the weights are the
   parts' shares of the within-request variation that ranking cares about. The first three are
   the visible signal: the features determine them, so a stage model can learn them. The hidden
   effect (standard normal) is seen by the logged funnel only; the noise by no scorer at all.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch

from cascbench.datasets.synthetic.config import WorldConfig
from cascbench.datasets.synthetic.entities import _Items, _Requests, _Users

# Requests per chunk of the [chunk, pool, L] similarity computation (bounds memory, stays in cache).
_CHUNK = 1024
# Added to the similarity of padded sequence rows so that the max never picks them.
_PADDING_SIMILARITY = -10.0


@dataclass(frozen=True)
class _Utility:
    """Standardised signal parts, float32 [R, P]: dot, interaction, quality; noise [R, P]; and
    the hidden effect [R, P], None in a world without one (hidden_weight 0)."""

    dot: torch.Tensor
    interaction: torch.Tensor
    quality: torch.Tensor
    noise: torch.Tensor
    hidden: torch.Tensor | None = None

    def signal(self, config: WorldConfig, with_interaction: bool = True) -> torch.Tensor:
        """float32 [R, P]: the visible signal, the part of the utility that the features determine
        (optionally without interaction)."""
        value = config.dot_weight * self.dot + config.quality_weight * self.quality
        if with_interaction:
            value = value + config.interaction_weight * self.interaction
        return value

    def logged(self, config: WorldConfig, with_interaction: bool = True) -> torch.Tensor:
        """float32 [R, P]: what a logged stage scores before its own noise: the visible signal
        plus the hidden effect."""
        value = self.signal(config, with_interaction)
        if self.hidden is not None:
            value = value + config.hidden_weight * self.hidden
        return value

    def total(self, config: WorldConfig) -> torch.Tensor:
        """float32 [R, P]: the true utility."""
        return self.logged(config) + config.noise_std * self.noise


def _raw_parts(
    users: _Users, items: _Items, requests: _Requests
) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw dot product and interaction, float32 [R, P], computed chunk by chunk.

    interaction = max over the real sequence rows of cos(candidate niche, sequence item niche); 0 for
    a request with an empty sequence.
    """
    r, d = requests.pool.shape[0], items.latent.shape[1]
    # One gather per chunk: [latent | niche | 1]; the trailing 1 meets a sequence row's
    # padding offset, so one bmm gives cos + offset and no [B, P, L] masking pass is needed.
    table = torch.cat([items.latent, items.niche, torch.ones(len(items.niche), 1)], dim=1)
    dot = torch.empty(requests.pool.shape)
    interaction = torch.empty(requests.pool.shape)
    for start in range(0, r, _CHUNK):
        rows = slice(start, min(start + _CHUNK, r))
        cand = table[requests.pool[rows]]  # [B, P, 2d + 1]
        user = users.latent[requests.user[rows]]  # [B, d]
        dot[rows] = torch.bmm(cand[:, :, :d], user[:, :, None]).squeeze(2)
        mask = requests.sequence_mask[rows]  # [B, L]
        seq = items.niche[requests.sequence[rows].clamp_min(0)]  # [B, L, d]
        offset = torch.where(mask, 0.0, _PADDING_SIMILARITY)[:, :, None]
        seq = torch.cat([seq, offset], dim=2)  # [B, L, d + 1]
        sim = torch.bmm(cand[:, :, d:], seq.transpose(1, 2)).amax(dim=2)  # [B, P]
        interaction[rows] = torch.where(mask.any(1, keepdim=True), sim, 0.0)
    return dot, interaction


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """x [R, P] minus its global mean, divided by its pooled within-request std."""
    centred = x - x.mean(dim=1, keepdim=True)
    within = math.sqrt(_total(centred.pow(2)) / x.numel())
    return (x - _total(x) / x.numel()) / max(within, 1e-8)


def _total(x: torch.Tensor) -> float:
    """The sum of x [R, P] in a fixed order (rows, then a sequential float64 cumsum over them).

    A plain sum splits the work by thread count, which would change the bytes of the world with the
    number of threads.
    """
    return torch.cumsum(x.double().sum(dim=1), dim=0)[-1].item()


def _utility(
    config: WorldConfig,
    users: _Users,
    items: _Items,
    requests: _Requests,
    g: torch.Generator,
    seed: int,
) -> _Utility:
    dot, interaction = _raw_parts(users, items, requests)
    quality = items.quality[requests.pool]
    noise = torch.randn(requests.pool.shape, generator=g)
    parts = (_standardise(dot), _standardise(interaction), _standardise(quality), noise)
    return _Utility(*parts, hidden=_hidden_effect(config, tuple(requests.pool.shape), seed))


def _hidden_effect(config: WorldConfig, shape: tuple[int, int], seed: int) -> torch.Tensor | None:
    """float32 [R, P] standard normal, or None when hidden_weight is 0.

    It comes from its own generator, seeded from the world seed, and takes nothing from the world's
    generator: every other draw is the same with or without it, so a world with hidden_weight 0 is
    byte for byte the world from before the knob, and one with it differs only in what the logged
    funnel kept.
    """
    if config.hidden_weight == 0:
        return None
    digest = hashlib.sha256(f"cascbench hidden effect {seed}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return torch.randn(shape, generator=g)
