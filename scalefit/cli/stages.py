"""What both demos (``scalefit demo`` and ``scalefit demo --reference``) print: numbered progress lines
and the held-out verdict, one line per held-out run with its predicted band and actual final loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from scalefit.report.text import fmt

__all__ = ["Stages", "verdict"]


class Stages:
    """Progress lines: '[demo 3/7  41.2s] fitting ...'."""

    def __init__(self, n: int, log: Callable[[str], None]) -> None:
        self.n, self.i, self.log, self.t0 = n, 0, log, time.monotonic()

    def __call__(self, text: str) -> None:
        self.i += 1
        self.log(f"[demo {self.i}/{self.n} {time.monotonic() - self.t0:6.1f}s] {text}")


def verdict(
    report: Mapping[str, Any], paths: Mapping[str, Path], stage: Stages, log: Callable[[str], None]
) -> int:
    """Announce the written report and log each held-out run against its band; 0 when every held-out
    final loss lies inside its band, else 1."""
    stage(f"report: {paths['html']} (JSON {paths['json'].name}, Markdown {paths['markdown'].name})")
    ok = True
    for h in report["heldout"]:
        inside = bool(h["within_band"])
        ok &= inside
        where = "inside" if inside else ("OUTSIDE" if h["within_band"] is not None else "no band for")
        log(
            f"  {h.get('label', h['run_id']):<34} [{h['fit']}] predicted {h['final_pred']:.4f} "
            f"[{fmt(h['lo'])}, {fmt(h['hi'])}], actual {h['final_obs']:.4f}: {where} band"
        )
    log("all held-out finals inside their bands" if ok else "some held-out finals fall outside their bands")
    return 0 if ok else 1
