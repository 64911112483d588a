"""Synthetic worlds: users, items, requests and a logged funnel, with known utility (SPEC §7).

A world produces the same canonical arrays as RecFlow (`CascadeData`), so every stage model and
method runs on it unchanged, and adds the true utility of every candidate for oracle metrics.

How a world is built (all vectorised in torch on CPU, from one seeded generator, and the hidden
effect from a second one seeded from the same world seed, so that the same (setting, config, seed)
gives the same bytes): `entities` draws the items, the users with their history pools, and the
requests (steps 1-3); `utility` gives every candidate its true utility (step 4); `funnel`
simulates the logged production stages and lays out the groups (step 5); `world.generate_world`
assembles the canonical arrays (`generate_world_with_signals` adds what the candidates' scores
are made of, for the ceilings of `scripts/world_ceilings.py`; `generate_days` yields a world one
day at a time, each day from a generator of its own, for worlds too large to hold at once, and
`datasets.world_cache.write_world_cache` writes one as a cache). `config` holds every knob
(`WorldConfig`) and the named presets.
"""

from cascbench.datasets.synthetic.config import WORLD_PRESETS, WorldConfig, get_world_config
from cascbench.lazy import lazy_getattr

#: Loaded on first use: the generators import torch, the presets do not (`cascbench list
#: worlds` and `run --help` read the presets only).
_LAZY = {
    "resolve_funnel": "cascbench.datasets.synthetic.funnel",
    "generate_world": "cascbench.datasets.synthetic.world",
    "generate_days": "cascbench.datasets.synthetic.world",
    "generate_world_with_signals": "cascbench.datasets.synthetic.world",
}


__getattr__ = lazy_getattr(globals(), _LAZY)


__all__ = [
    "WORLD_PRESETS",
    "WorldConfig",
    "generate_days",
    "generate_world",
    "generate_world_with_signals",
    "get_world_config",
    "resolve_funnel",
]
