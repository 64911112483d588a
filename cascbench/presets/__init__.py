"""Packaged YAML configs: `cascbench run --preset NAME` (`cascbench list presets`)."""
