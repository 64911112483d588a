"""From the result store to paper-style tables and figures.

tables (runs -> mean ± std per variant) · stats (paired tests, Holm, bootstrap) · compare (each
variant against its baseline) · sweeps · paper (the published numbers) · build (the report's
tables) · formats (rich, Markdown, LaTeX) · loading (run files) · figures and plots (`cascbench
plot`).
"""
