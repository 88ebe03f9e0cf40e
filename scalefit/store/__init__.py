"""The curve store and everything that reads curves in: it alone knows the on-disk layout.

- `scalefit.store.schema`: the runs, curves and evals tables (one definition of their columns);
- `scalefit.store.parquet`: `RunWriter`, `read_curves`/`write_curves`, and the layout queries other parts
  use (`run_status`, `run_statuses`, `run_meta`, `record_status`, `rows_before_step`);
- `scalefit.store.curves`: `Curves`, validated in-memory curves;
- `scalefit.store.importers` and `scalefit.store.datasets`: logs people have, and the bundled data;
- `scalefit.store.sources`: a store folder or a dataset name as input, and stamped JSON input files.
"""
