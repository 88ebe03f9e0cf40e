"""Predictions built on fits: targets, bands, schedule choice, law chains, compute-optimal allocation."""
