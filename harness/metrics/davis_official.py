"""Cross-check with the official DAVIS-2017 evaluator (davis2017-evaluation), when it is installed.

The package is not on PyPI; ``harness score --scorer official`` calls :func:`official_scores` to
compare the harness's own scorer (``harness.metrics.davis``) with the tool papers report from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import DataError, HarnessError, PredictionError

INSTALL_HINT = (
    "the official DAVIS evaluator is not installed; it is not on PyPI, install it with\n"
    "  pip install git+https://github.com/davisvideochallenge/davis2017-evaluation\n"
    "(it uses np.bool, which NumPy 1.24-1.26 lack; NumPy >= 2 has it again)"
)


def official_scores(
    davis_root: Path, pred_dir: Path, sequences: list[str] | None = None, *, split: str = "val"
) -> dict[str, Any]:
    """Scores of ``pred_dir/<seq>/<frame>.png`` by davis2017-evaluation's ``DAVISEvaluation``, semi-supervised.

    ``davis_root`` holds ``Annotations/480p/`` and ``ImageSets/2017/<split>.txt`` (``JPEGImages`` is not
    needed). ``sequences=None`` scores the whole split. Returns the same blocks as
    ``harness.metrics.davis.score_folder``: ``metrics``, ``per_sequence``, ``per_object`` (fractions).
    """
    try:
        from davis2017.evaluation import DAVISEvaluation
    except ImportError as err:
        raise HarnessError(INSTALL_HINT) from err
    if not hasattr(np, "bool"):  # NumPy 1.24-1.26: the official code still spells np.bool
        np.bool = bool  # type: ignore[attr-defined]
    chosen: str | list[str] = "all" if sequences is None else list(sequences)
    try:
        try:  # codalab=True lets it run without JPEGImages; older releases lack the argument
            evaluation = DAVISEvaluation(str(davis_root), "semi-supervised", split, sequences=chosen, codalab=True)
        except TypeError:
            evaluation = DAVISEvaluation(str(davis_root), "semi-supervised", split, sequences=chosen)
        raw = evaluation.evaluate(str(pred_dir))
    except FileNotFoundError as err:
        raise DataError(f"official evaluator: {err}") from err
    except SystemExit as err:  # it calls sys.exit() on predicted ids above the object count
        raise PredictionError(f"the official evaluator stopped on {pred_dir}: a predicted id is above the "
                              "number of objects in the ground truth, or a frame is missing") from err
    return _convert(raw)


def _convert(raw: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The evaluator's lists (one entry per object, in ``M_per_object`` order) as harness blocks."""
    names = list(raw["J"]["M_per_object"])
    per_object = {}
    for i, name in enumerate(names):
        per_object[name] = {f"{m}-{label}": float(raw[m][key][i])
                            for m in ("J", "F") for key, label in (("M", "Mean"), ("R", "Recall"), ("D", "Decay"))}
    per_sequence: dict[str, dict[str, Any]] = {}
    for name, scores in per_object.items():
        seq = name.rsplit("_", 1)[0]
        per_sequence.setdefault(seq, {"objects": []})["objects"].append(scores)
    for entry in per_sequence.values():
        objects = entry.pop("objects")
        j = float(np.mean([o["J-Mean"] for o in objects]))
        f = float(np.mean([o["F-Mean"] for o in objects]))
        entry.update({"n_objects": len(objects), "J-Mean": j, "F-Mean": f, "J&F-Mean": (j + f) / 2})
    metrics = {f"{m}-{label}": float(np.mean(raw[m][key]))
               for m in ("J", "F") for key, label in (("M", "Mean"), ("R", "Recall"), ("D", "Decay"))}
    metrics = {"J&F-Mean": (metrics["J-Mean"] + metrics["F-Mean"]) / 2, **metrics}
    return {"metrics": metrics, "per_sequence": per_sequence, "per_object": per_object}
