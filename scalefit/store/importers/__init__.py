"""Import loss curves people already have into `Curves`.

- `import_table`: any CSV/JSON/Parquet/DataFrame with user-named run/step/LR/loss columns (or a schedule).
- `import_wandb_csv`: Weights & Biases CSV exports (run histories and the UI's panel exports).
- `import_tensorboard`: TensorBoard event files (needs the ``tensorboard`` package).
- `import_mpl_csv`: Multi-Power Law reference CSVs (``step,lr,loss``), LR checked to 1e-9.
- `import_schaipp_json`: Hägele/Schaipp JSON logs, cooldown branches joined to their trunks.
"""

from __future__ import annotations

from scalefit.store.importers.mpl import import_mpl_csv
from scalefit.store.importers.schaipp import import_schaipp_json
from scalefit.store.importers.table import import_table
from scalefit.store.importers.tensorboard import import_tensorboard
from scalefit.store.importers.wandb import import_wandb_csv

__all__ = ["import_table", "import_wandb_csv", "import_tensorboard", "import_mpl_csv", "import_schaipp_json"]
