"""The in-tree cascade training methods; importing this package registers them."""

from cascbench.methods import bce, lcron, rankflow

__all__ = ["bce", "lcron", "rankflow"]
