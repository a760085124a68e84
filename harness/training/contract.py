"""The trainer contract: what a method supplies so that ``harness train`` can train it.

The harness owns everything a training run shares with every other one (:mod:`harness.training.loop`):
the device, joining the ``torchrun`` process group and wrapping the model in DistributedDataParallel,
seeding, ``--resume`` / ``--force``, checkpoints with every rank's RNG state, the ``metrics.jsonl``
log, the progress bar, evaluation while training through the ordinary runner, ``curve.svg``, the
provenance of the training data, and the GPU switches (``torch.compile``, channels_last, mixed
precision). A method supplies only what is its own, by subclassing :class:`Trainer`, and registers the
subclass beside the method, lazily by name so that ``harness list`` imports no torch::

    register_trainer("mymethod", "mypkg.trainer:MyTrainer", summary="...", sweep_dir=Path(...))  # sweep_dir optional

The recipe machinery (:mod:`harness.training.recipes`) then serves ``--recipe NAME`` / ``--set``,
and the loop (:func:`harness.training.loop.train`) calls the members below.

Class attributes (checked when the trainer is registered or first loaded; a missing one is an error
naming it):

``method``
    The registered method whose ``--checkpoint`` the evaluation-only export feeds
    (``harness run --method <method> --checkpoint <out-dir>/<eval_file>``).
``recipe_model``
    The recipe, declared as a pydantic model, a subclass of :class:`harness.training.recipe_model.Recipe`
    (which declares what the loop itself reads: ``name``, ``seed``, ``optim.batch_size``,
    ``optim.epochs``, ``train.*``). Fields with a default are keys whose default reproduces what a
    recipe written before the key existed did; resuming an old checkpoint fills them in.
``recipe_dir``
    The folder of named recipes (``<recipe_dir>/<name>.yaml``); a recipe may name another as ``base:``.
``curve_metric``
    The per-step diagnostic (a float key of :meth:`Trainer.training_step`'s diagnostics) drawn on the
    right axis of ``curve.svg``, shown on the progress bar and summarised by ``harness bench train``.

Optional class attributes: ``curve_label`` (words for that axis), ``state_file`` (the resumable
checkpoint's name, default ``train-state.pt``), ``resumable_changes`` (recipe keys that may differ
between a checkpoint and the run resuming it), ``demo_recipe`` (the recipe ``harness bench train``
times; its committed run log lives at ``results/train/<demo_recipe>/metrics.jsonl``) and
``paper_recipe`` (the full-scale recipe ``harness bench train --loader-only`` times). The property
:attr:`Trainer.eval_file` names the evaluation-only checkpoint (default ``<method>-eval.pt``).

Methods to implement: :meth:`~Trainer.build_model`, :meth:`~Trainer.build_data`,
:meth:`~Trainer.training_step`, :meth:`~Trainer.export_eval`. Methods with a default:
:meth:`~Trainer.build_optimizer` (Adam and a step schedule from ``optim.*``),
:meth:`~Trainer.prepare_model` (the model as the run needs it, e.g. SyncBatchNorm across ranks; default
unchanged), :meth:`~Trainer.batch_to_device`, and the benchmark hooks :meth:`~Trainer.chance`,
:meth:`~Trainer.synthetic_batch`, :meth:`~Trainer.benchmark_loader`.

What the loop guarantees, so that a trainer need not care:

- **Exact resume.** The loop restores model, optimizer, scheduler, grad scaler and every rank's
  Python/NumPy/torch RNG state from the state file, and passes :meth:`Trainer.training_step` a
  generator seeded from ``(seed, step, rank)``. A trainer keeps resume exact by deriving all its
  other randomness from positions too: the batch sampler of :class:`~harness.training.data.TrainData`
  must yield, for a given step, the same keys whatever step it was started from, and samples must draw
  their randomness from seeds carried in their keys, never from global state (DataLoader workers
  do not share it).
- **DDP.** Under ``torchrun`` the model is wrapped in DistributedDataParallel before the steps (so
  gradients are averaged over ranks; BatchNorm statistics stay per rank unless
  :meth:`Trainer.prepare_model` synchronises them), each rank gets its own
  sampler shard (``rank``/``world_size`` are passed to :meth:`Trainer.build_data`) and the logged loss
  and diagnostics (floats, and dicts of floats) are means over ranks. Rank 0 builds the data first
  (filling caches the others then read), writes the log, the checkpoints and the evaluations.
- **Evaluation never changes training.** The global RNG state is put back after every evaluation.
- **Checkpoints** come from the plain module (no DDP ``module.`` or compiled ``_orig_mod.`` prefixes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.errors import HarnessError

if TYPE_CHECKING:
    import torch

    from harness.training.data import TrainData
    from harness.training.recipe_model import Recipe

#: class attributes every trainer declares (the checks in :func:`check_trainer_class`)
REQUIRED_ATTRIBUTES = ("method", "recipe_model", "recipe_dir", "curve_metric")
#: log keys the loop writes itself: diagnostics may not reuse them
LOOP_KEYS = ("step", "epoch", "loss", "lr", "clips_per_s", "time", "decode_failures", "compile_s", "kind")

Diagnostics = dict[str, "float | dict[str, float]"]


class Trainer(ABC):
    """A method's part of training; see the module docstring for the contract and the loop's guarantees."""

    method: ClassVar[str]
    recipe_model: ClassVar[type[Recipe]]
    recipe_dir: ClassVar[Path]
    curve_metric: ClassVar[str]
    curve_label: ClassVar[str] = ""
    state_file: ClassVar[str] = "train-state.pt"
    #: what only changes how fast a run goes, never what it computes: the loop's own switches, and data loading
    resumable_changes: ClassVar[tuple[str, ...]] = ("train.checkpoint_every", "train.compile", "train.channels_last",
                                                    "data.workers", "data.cache_dir")
    demo_recipe: ClassVar[str | None] = None
    paper_recipe: ClassVar[str | None] = None

    @property
    def eval_file(self) -> str:
        """File name of the evaluation-only checkpoint (in the output folder and in ``eval/step-<N>/``)."""
        return f"{self.method}-eval.pt"

    @abstractmethod
    def build_model(self, recipe: dict[str, Any]) -> torch.nn.Module:
        """The model to train, on the CPU (the loop moves it, seeds the RNGs before, wraps it in DDP after).

        A model with a ``channels_last`` attribute is told (set to True) when ``train.channels_last``
        is on, so it can convert its inputs; its weights are converted by the loop.
        """

    @abstractmethod
    def build_data(
        self, recipe: dict[str, Any], roots: list[Path], *, device: torch.device, rank: int, world_size: int,
        local_batch: int,
    ) -> TrainData:
        """Index the training data under ``roots`` and return what the loop draws batches from.

        ``local_batch`` is this rank's share of ``optim.batch_size``; the sampler must deal every
        rank its own shard of each epoch and have the same ``steps_per_epoch`` on every rank.
        """

    @abstractmethod
    def training_step(
        self, forward: Callable[..., Any], batch: Any, generator: torch.Generator, recipe: dict[str, Any]
    ) -> tuple[torch.Tensor, Diagnostics]:
        """The loss of one batch (already on the device), and its diagnostics for the log.

        ``forward`` is the model's forward as the loop runs it (DDP-wrapped, compiled, under autocast):
        call it instead of the model. Compute the loss outside it in the precision you need.
        ``generator`` (on the device, seeded from ``(seed, step, rank)``) is for the step's randomness
        (dropout masks, ...). Diagnostics are floats or flat dicts of floats, logged under their keys
        (which must not be one of :data:`LOOP_KEYS`); the loop does the backward pass and the step.
        """

    @abstractmethod
    def export_eval(self, model_state: dict[str, torch.Tensor], recipe: dict[str, Any], step: int, path: Path) -> Path:
        """Write the evaluation-only checkpoint ``harness run --method <method> --checkpoint`` loads; return its path."""

    def build_optimizer(
        self, model: torch.nn.Module, recipe: dict[str, Any], steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """Adam (``optim.lr``, ``optim.weight_decay``) and a step schedule: the learning rate is multiplied by
        ``optim.gamma`` at each of ``optim.milestones`` (epochs; the scheduler steps every iteration)."""
        import torch

        optim = recipe["optim"]
        optimizer = torch.optim.Adam(model.parameters(), lr=float(optim["lr"]), weight_decay=float(optim["weight_decay"]))
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=[int(m) * steps_per_epoch for m in optim["milestones"]], gamma=float(optim["gamma"])
        )
        return optimizer, scheduler

    def prepare_model(self, model: torch.nn.Module, recipe: dict[str, Any], *, device: torch.device,
                      world_size: int) -> torch.nn.Module:
        """The built model, on ``device``, adapted to a run on ``world_size`` ranks (default: unchanged).

        Called by the loop before the optimizer is built and before DDP wraps the model: the place for
        e.g. :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`, which keeps the parameters and the
        state-dict keys. Not called by ``harness bench train``'s model-step timing (one process).
        """
        return model

    def batch_to_device(self, batch: Any, recipe: dict[str, Any], device: torch.device) -> Any:
        """A batch from the loader → what :meth:`training_step` takes, on ``device`` (default: a tensor moved)."""
        return batch.to(device, non_blocking=True)

    def chance(self, recipe: dict[str, Any]) -> float | None:
        """What ``curve_metric`` would be for a model that guesses (``harness bench train`` reports it); None: unknown."""
        return None

    def synthetic_batch(self, recipe: dict[str, Any], device: torch.device) -> Any:
        """A batch of the recipe's shapes without reading data, for ``harness bench train``'s model-step timing."""
        raise HarnessError(f"method {self.method!r}: its trainer has no synthetic batch, so the model step cannot be "
                           "timed alone (pass --skip-model-step)")

    def benchmark_loader(self, recipe: dict[str, Any], video: Path, clips: int, rounds: int) -> dict[str, Any]:
        """``harness bench train --loader-only``: the data pipeline's speed on one file, as a JSON-able report."""
        raise HarnessError(f"method {self.method!r}: its trainer has no loader benchmark (--loader-only)")


def check_trainer_class(cls: Any, name: str) -> None:
    """Refuse a trainer that is not a :class:`Trainer` subclass, misses a required member or leaves one abstract."""
    if not (isinstance(cls, type) and issubclass(cls, Trainer)):
        raise HarnessError(f"trainer {name!r}: {cls!r} is not a subclass of harness.training.Trainer")
    missing = [attr for attr in REQUIRED_ATTRIBUTES if not hasattr(cls, attr)]
    abstract = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing or abstract:
        parts = ([f"class attributes {', '.join(missing)}"] if missing else []) + (
            [f"methods {', '.join(abstract)}"] if abstract else [])
        raise HarnessError(f"trainer {name!r} ({cls.__module__}.{cls.__qualname__}) does not implement the trainer "
                           f"contract: it lacks {' and '.join(parts)} (see harness/training/contract.py)")
    from harness.training.recipe_model import Recipe

    if not (isinstance(cls.recipe_model, type) and issubclass(cls.recipe_model, Recipe)):
        raise HarnessError(f"trainer {name!r}: recipe_model must be a subclass of harness.training.recipe_model.Recipe")
    if cls.curve_metric in LOOP_KEYS:
        raise HarnessError(f"trainer {name!r}: curve_metric {cls.curve_metric!r} is a key the loop logs itself")
