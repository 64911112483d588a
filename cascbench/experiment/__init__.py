"""Run configs, run ids, the result store, and grid execution."""
