"""The reference demo, ``scalefit demo --reference``: the fitting half of the demo on bundled published
data, in seconds and without training anything. The Multi-Power Law paper's 400M curves (fit 3, predict
the other 6, extrapolate to a longer WSD run, search the WSD family) and Chinchilla on Epoch AI's 240
points (compute-optimal allocation). It reports; it does not gate on the bands.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from scalefit.cli.stages import Stages, verdict
from scalefit.fitting.api import fit
from scalefit.predict.evaluate import evaluate
from scalefit.predict.schedule_choice import best_schedule
from scalefit.predict.targets import Target, compute_optimal, cross_validate, predict_target
from scalefit.report.build import assemble, curve_entries, report_provenance, write_report
from scalefit.store import datasets

__all__ = ["MPL_TRAIN", "run_reference"]

MPL_TRAIN = ["cosine_24000", "constant_24000", "wsdcon_9"]
_METRICS = ("r2", "mae", "rmse", "pred_e", "worst_e", "kendall_tau")


def run_reference(
    out: str | Path = "scalefit-out",
    *,
    law: str = "momentum",
    bootstrap: int = 200,
    log: Callable[[str], None] = print,
) -> int:
    """The fitting half on bundled published data: MPL 400M (fit 3 curves, predict the other 6) and
    Chinchilla on Epoch AI's 240 points. Returns 0 (it reports, it does not gate on the bands)."""
    stage = Stages(4, log)
    curves = datasets.load("mpl-400m")
    held = [r for r in curves.run_ids if r not in MPL_TRAIN]
    stage(f"fitting the {law} law on {', '.join(MPL_TRAIN)} (MPL 400M), and once per left-out run")
    mpl = fit(curves.select(MPL_TRAIN), law=law)
    cv = cross_validate(lambda c: fit(c, law=law), curves.select(MPL_TRAIN), [[r] for r in MPL_TRAIN])
    name, err = f"{law} (MPL 400M)", cv["rel_sd"]
    entries = curve_entries(name, mpl, curves, held, model_error=err)
    scores = evaluate(mpl.predict(curves.select(held)), curves.select(held))
    target = Target("wsd:peak=3e-4,steps=72000,warmup=2160,decay=0.2,final=0.1", run_id="400M wsd 72k")
    targets = [predict_target(mpl, target, name=name, fitted=curves.select(MPL_TRAIN), model_error=err)]
    family = best_schedule(mpl, Target("cosine:peak=3e-4,steps=24000,warmup=2160,final=0.1"), "wsd")
    family["fit"] = name
    stage(f"fitting Chinchilla on Epoch AI's 240 points ({bootstrap} bootstrap resamples)")
    points = datasets.epoch_subset()
    chin = fit(points, law="chinchilla", bootstrap=bootstrap)
    parity = {
        "title": "Chinchilla (Epoch data): observed vs fitted",
        "fit": "chinchilla (Epoch)",
        "observed": points["loss"],
        "predicted": chin.predict(points)["loss_pred"],
    }
    stage("writing the report")
    report = assemble(
        "scalefit reference demo: MPL 400M and Chinchilla",
        {name: mpl, "chinchilla (Epoch)": chin},
        curves=entries,
        targets=targets,
        schedules=family,
        parity=[parity],
        compute_optimal=compute_optimal(chin, [1e21, 5.88e23, 1e25]),
        metrics={name: {k: scores.get(k) for k in _METRICS}},
        calibration={name: cv},
        provenance=report_provenance(data=["scalefit:mpl-400m", "scalefit:chinchilla-epoch (240 points)"]),
    )
    report["summary"] = [
        f"{name}: held-out PredE {100 * scores['pred_e']:.3f}%, WorstE "
        f"{100 * scores['worst_e']:.2f}% (Multi-Power Law paper at 400M: 0.168%, 0.99%).",
        f"Bands include a model error of {100 * err:.2f}% (relative, 1 sd), the RMS final-loss error of "
        "predicting each fitted curve from the other two.",
    ]
    verdict(report, write_report(report, out), stage, log)
    return 0
