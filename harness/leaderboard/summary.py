"""The answer first: per dataset, the best ranked run, by how much it leads, and the best comparable
published number.

A gap between two runs on the same sequences is the mean of their per-sequence differences, with a
95% percentile interval from a *paired* bootstrap over those sequences (resampling sequences, not
runs, because sequence difficulty dominates the spread). A published number is comparable only
when the run covers the whole official split and its protocol family matches the publication's
protocol group; otherwise the summary says why it is not compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.leaderboard.cells import run_name

BOOTSTRAP_SAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed: regenerating the leaderboard from the same records gives the same intervals


@dataclass(frozen=True)
class Gap:
    """``a − b`` in points: the mean over ``n`` shared sequences and its 95% bootstrap interval."""

    points: float
    low: float
    high: float
    n: int

    def text(self) -> str:
        return f"{self.points:+.1f} pts [95% CI {self.low:+.1f}, {self.high:+.1f}] over {self.n} sequences"


def paired_bootstrap(differences: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> Gap:
    """Mean of ``differences`` (one per sequence, in points) and the 2.5/97.5 percentiles of the mean
    over ``samples`` resamplings of the sequences with replacement."""
    values = np.asarray(differences, dtype=np.float64)
    if values.size == 0:
        raise ValueError("a bootstrap needs at least one shared sequence")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(samples, values.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Gap(float(values.mean()), float(low), float(high), int(values.size))


def sequence_values(per_sequence: Mapping[str, Any] | None, metric: str) -> dict[str, float]:
    """Per-sequence values of ``metric`` in percent (sequences without a value are left out)."""
    out = {}
    for name, values in (per_sequence or {}).items():
        value = values.get(metric) if isinstance(values, Mapping) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = 100.0 * float(value)
    return out


def run_gap(a: Mapping[str, float], b: Mapping[str, float]) -> Gap | None:
    """Paired gap ``a − b`` over the sequences both runs scored (None when they share none)."""
    shared = sorted(set(a) & set(b))
    if not shared:
        return None
    return paired_bootstrap(np.array([a[s] - b[s] for s in shared]))


def published_gap(a: Mapping[str, float], published: float, value: float) -> Gap | None:
    """``value − published`` (``value``: the run's global metric, e.g. DAVIS's mean over objects), with
    the spread of the run's per-sequence mean from a bootstrap over its sequences (the published
    number is a constant)."""
    if not a:
        return None
    scores = np.array([a[s] for s in sorted(a)])
    spread = paired_bootstrap(scores - scores.mean())
    gap = value - published
    return Gap(gap, gap + spread.low, gap + spread.high, spread.n)


@dataclass(frozen=True)
class Summary:
    """One dataset's line of the at-a-glance table (texts already formatted for both renderers)."""

    dataset: str
    anchor: str
    primary: str
    best: str
    score: str
    sequences: str
    lead: str
    published: str
    versus_published: str


def best_published(reported: pd.DataFrame, primary: str, family: str | None, higher_is_better: bool = True) -> pd.Series | None:
    """The best published ``primary`` (the highest, or the lowest where smaller is better) among entries whose
    protocol group has ``family``."""
    if reported.empty or family is None:
        return None
    frame = reported[(reported["protocol"] == family) & reported[primary].notna()] if primary in reported else reported.iloc[0:0]
    if frame.empty:
        return None
    return frame.sort_values(primary, ascending=not higher_is_better, kind="mergesort").iloc[0]


def _family_group(reported: pd.DataFrame, family: str) -> str:
    groups = reported.loc[reported["protocol"] == family, "protocol_group"] if not reported.empty else []
    return str(next(iter(groups), family))


def section_summary(
    section: str,
    anchor: str,
    primary: str,
    ranked: pd.DataFrame,
    smoke: int,
    reported: pd.DataFrame,
    per_sequence: Mapping[str, Mapping[str, Any]],
) -> Summary:
    """The at-a-glance line of one section.

    ``ranked``: its ranked rows (all groups); ``per_sequence``: record path -> per-sequence scores.
    """
    ranked = ranked[ranked["primary_value"].notna()]
    if ranked.empty:
        why = f"no ranked run ({smoke} smoke run{'s' * (smoke != 1)}, not ranked)" if smoke else "no run on this split"
        family = "crw"
        best_text, score, sequences, lead, versus = why, "–", "–", "–", "–"
        best = None
    else:
        best = ranked.sort_values("rank_value", ascending=False, kind="mergesort").iloc[0]
        family = str(best["protocol"])
        label = run_name(best)
        best_text = f"{label} ({best['protocol']} · {best['protocol_hash']})"
        score = f"{best['primary_value']:.1f}"
        sequences = str(best["dataset"]).split(", ", 1)[-1]
        peers = ranked[(ranked["data_key"] == best["data_key"]) & (ranked["protocol_hash"] == best["protocol_hash"])
                       & (ranked["record"] != best["record"])]
        if peers.empty:
            lead = "only ranked run on these sequences under this protocol"
        else:
            second = peers.sort_values("rank_value", ascending=False, kind="mergesort").iloc[0]
            leader, runner_up = (sequence_values(per_sequence.get(r["record"]), primary) for r in (best, second))
            gap = run_gap(leader, runner_up) if best["higher_is_better"] else run_gap(runner_up, leader)
            name = run_name(second)
            lead = f"{gap.text()} ahead of {name}" if gap else f"ahead of {name} (no shared per-sequence scores)"
    published_row = best_published(reported, primary, family, bool(best["higher_is_better"]) if best is not None else True)
    group = _family_group(reported, family)
    if published_row is None:
        published = (f"none published for this split in protocol group {group}" if not reported.empty
                     else f"none for {section} in reported.yaml")
        if best is not None:
            versus = "–"
    else:
        mark = "" if primary not in published_row["unconfirmed"] else "†"
        published = (f"{published_row['method']} {published_row['backbone'] or ''}".strip()
                     + f": {published_row[primary]:.1f}{mark} (group {published_row['protocol_group']})")
        if best is not None:
            if not best["full_split"]:
                versus = f"not compared: the run measured {sequences}; published numbers are for the full split"
            else:
                gap = published_gap(sequence_values(per_sequence.get(best["record"]), primary),
                                    float(published_row[primary]), float(best["primary_value"]))
                versus = gap.text() if gap else "–"
    return Summary(section, anchor, primary, best_text, score, sequences, lead, published, versus)
