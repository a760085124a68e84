"""``curve.svg`` beside a training run: the evaluations' score (left axis) and a per-step diagnostic (right) against step."""

from __future__ import annotations

from pathlib import Path

from harness.training.evaluate import is_eval_entry, read_entries

CURVE_NAME = "curve.svg"


def draw_curve(log_path: Path, out_path: Path, method: str, metric_key: str, metric_label: str = "") -> Path | None:
    """Draw the curve of ``log_path`` (``metrics.jsonl``) into ``out_path``; None when nothing was evaluated yet.

    ``metric_key`` is the training diagnostic for the right axis (the trainer's ``curve_metric``),
    ``metric_label`` its words (default: the key).
    """
    entries = read_entries(log_path)
    evals = sorted((e for e in entries if is_eval_entry(e)), key=lambda e: e["step"])
    steps = [e for e in entries if not is_eval_entry(e)]
    if not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from harness.io import atomic_path

    label = metric_label or metric_key
    fig, left = plt.subplots(figsize=(7, 4.5))
    metric = evals[-1]["metric"]
    last = evals[-1]["data"]
    where = ", ".join(last["sequences"])
    # entries logged before the label existed say only whether they were smoke numbers
    what = last.get("label") or ("smoke run" if evals[-1]["smoke"] else "")
    left.plot([e["step"] for e in evals], [100 * e["score"] for e in evals], "o-", color="tab:blue",
              label=f"{metric} on {evals[-1]['task']}: {where}{f' ({what})' if what else ''}")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("training step")
    left.set_ylabel(f"{metric} (%)", color="tab:blue")
    right = left.twinx()
    if steps:
        values = [e[metric_key] for e in steps]
        right.plot([e["step"] for e in steps], values, color="tab:orange", alpha=0.35, lw=1)
        window = max(1, len(steps) // 20)
        smooth = [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
                  for i in range(len(values))]
        right.plot([e["step"] for e in steps], smooth, color="tab:orange",
                   label=label + (f" (mean of {window} steps)" if window > 1 else ""))
    right.set_ylabel(label, color="tab:orange")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.set_title(f"{method} training: {metric} of the step checkpoints and the {label}", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles, [h.get_label() for h in handles], loc="lower center", fontsize=8, ncol=1, frameon=False)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="svg", metadata={"Date": None})
    plt.close(fig)
    return out_path
