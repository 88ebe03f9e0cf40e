"""Parquet store, Curves, importers and the bundled published datasets."""
