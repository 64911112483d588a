"""Tables (and, later, statistics and figures) built from the result store."""
