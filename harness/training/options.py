"""What ``harness train`` passes to the loop besides the trainer and its recipe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EvalOptions:
    """What ``--eval-every`` and its companion flags ask for."""

    every: int
    task: str = "davis"
    data_root: str | None = None
    sequences: list[str] | None = None
    limit: int | None = None
    device: str = "auto"


@dataclass
class TrainOptions:
    """The run's flags: data, output folder, length, resume/force, device, progress bar, evaluation."""

    data: list[Path]
    out_dir: Path
    max_steps: int | None = None
    resume: bool = False
    device: str = "auto"
    progress: bool = True
    force: bool = False
    #: ``--allow-data-change``: resume although the training videos differ from the checkpoint's
    allow_data_change: bool = False
    #: ``--eval-every``: evaluate eval/step-<N>/<eval file> through the runner every N steps and at the end
    evaluate: EvalOptions | None = None
