"""From the result store to paper-style tables and figures.

tables (runs -> mean ± std per variant over world × training seeds) · stats (paired tests,
Holm, the hierarchical and per-request bootstraps, the minimum detectable effect) · compare (each
variant against its baseline, with a verdict) · findings (each pair of methods across tables) ·
power (`cascbench power`) · sweeps · paper (the published numbers) · build (the report's tables)
· formats (rich, Markdown, LaTeX) · loading (run files) · figures and plots (`cascbench plot`).
docs/statistics.md explains the statistics.
"""
