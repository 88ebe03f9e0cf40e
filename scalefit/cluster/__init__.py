"""Sweeps on a Ray cluster: the sweep spec (no ray) and the runner (the only ray importer)."""
