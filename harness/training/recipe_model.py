"""What every training recipe declares: the keys the loop itself reads (a trainer's recipe model adds its own)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.declared import Declared

#: ``train.compile`` / ``train.channels_last``: YAML reads on/off as booleans
Switch = Literal["auto", "on", "off"] | bool


class OptimSettings(Declared):
    """The optimiser and its schedule (the default :meth:`~harness.training.contract.Trainer.build_optimizer`)."""

    batch_size: int = Field(ge=1, description="GLOBAL batch, split evenly over the ranks")
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    epochs: int = Field(ge=1)
    milestones: list[int] = Field(description="epochs at which the learning rate is multiplied by gamma")
    gamma: float = Field(gt=0)


class LoopSettings(Declared):
    """What the loop itself does on the device and how often it saves."""

    amp: Literal["auto", "bf16", "fp16", "off", False] = Field(
        description="CUDA only: auto = bf16 where supported, else fp16 with a grad scaler; the CPU always float32")
    compile: Switch = Field("auto", description="torch.compile the model step: auto = on CUDA only")
    channels_last: Switch = Field("auto", description="NHWC weights and activations: auto = on CUDA only")
    checkpoint_every: int = Field(ge=1, description="steps between checkpoints (one is also written at the end)")


class Recipe(Declared):
    """What every recipe holds; a trainer's ``recipe_model`` adds its own sections."""

    name: str
    seed: int
    optim: OptimSettings
    train: LoopSettings
