"""The CRW training augmentation: a clip of frames → a grid of jittered patches per frame (docs/protocol.md §3.2–3.3).

Per frame, independently (new random parameters for every frame, so consecutive frames are
cropped differently — that is part of what the walk must see through):

1. RandomResizedCrop to ``frame_size`` (scale 0.8–0.95, aspect ratio 0.7–1.3, bilinear);
2. a regular grid of ``patch_size`` patches with stride ``patch_stride`` (256/64/32 → 7×7 = 49);
3. each patch its own RandomResizedCrop back to ``patch_size`` (scale 0.7–0.9, ratio 3/4–4/3),
   all patches of all frames cut by one ``grid_sample`` call (:func:`cut_patches`; the former
   one-interpolation-per-patch path is kept in :mod:`methods.crw.reference` and tested against);
4. scale to [0, 1] and normalise with the **CIFAR-10** mean/std (0.4914, 0.4822, 0.4465) /
   (0.2023, 0.1994, 0.2010). The original trained with these and evaluated with ImageNet
   statistics; the author called the mismatch a bug of no real consequence (issue #23). We keep
   it because the released weights were trained that way; the recipe can change ``mean``/``std``.

All randomness comes from one ``torch.Generator`` (read in bulk, the same numbers as one torch
call per draw), so the same generator state gives the same patches bit for bit (the
test-time-adaptation helper relies on that too).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

DEFAULTS: dict[str, Any] = {
    "frame_size": 256,
    "frame_scale": (0.8, 0.95),
    "frame_ratio": (0.7, 1.3),
    "patch_size": 64,
    "patch_stride": 32,
    "patch_scale": (0.7, 0.9),
    "patch_ratio": (3 / 4, 4 / 3),
    "mean": CIFAR10_MEAN,
    "std": CIFAR10_STD,
}


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _randint(generator: torch.Generator, high_inclusive: int) -> int:
    return int(torch.randint(high_inclusive + 1, (), generator=generator))


def _box_rule(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    uniform: Callable[[], float],
    randint: Callable[[int], int],
) -> tuple[int, int, int, int]:
    """:func:`random_resized_box` on given draws: ``uniform()`` in [0, 1), ``randint(k)`` in 0..k (same arithmetic)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * uniform())
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * uniform())
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return randint(height - h), randint(width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random crop, by torchvision's RandomResizedCrop rule.

    Ten tries at an area fraction in ``scale`` and a log-uniform aspect ratio in ``ratio``; if
    none fits, a centre crop with the ratio clamped to ``ratio``. Every draw is one torch call on
    ``generator``; :meth:`ClipAugment.draw_boxes` feeds the same rule (:func:`_box_rule`) the same numbers read in
    bulk, and the tests hold the two to equal boxes and generator states.
    """
    return _box_rule(height, width, scale, ratio, *_per_call_draws(generator))


def _per_call_draws(generator: torch.Generator) -> tuple[Callable[[], float], Callable[[int], int]]:
    """``(uniform, randint)`` for :func:`_box_rule`, each one torch call on ``generator``."""
    return (lambda: _uniform(generator, 0.0, 1.0)), (lambda high: _randint(generator, high))


# -- the same draws in bulk -------------------------------------------------------------------
#
# A CPU torch.Generator is a plain MT19937 engine. ``torch.rand((), dtype=float64)`` takes two of
# its 32-bit words w1, w2 and returns ((w1 << 32 | w2) & (2**53 - 1)) * 2**-53; ``torch.randint(k, ())``
# (k < 2**32) takes one word w and returns w % k. numpy's MT19937 is the same engine, so the words
# of a whole clip are read with one numpy call from a copy of the generator's state, and the
# generator is then moved past exactly the words used: the same numbers and the same final state as
# four torch calls per box, at a fraction of the Python overhead. ``_bulk_draws_work`` checks this
# against torch once per process (the state's byte layout is torch's CPUGeneratorImplState) and
# the per-call draws are used if it ever disagrees.

_MT_WORDS = 624
_STATE_LEFT, _STATE_NEXT, _STATE_KEY = 8, 16, 24  # int32 left, uint64 next, uint64 state[624]
_MASK53 = (1 << 53) - 1
_TWO_TO_MINUS_53 = 1.0 / (1 << 53)
_bulk_checked: bool | None = None


class _GeneratorWords:
    """The words a CPU ``torch.Generator`` hands out next, read in bulk; :meth:`commit` consumes them."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self.raw = generator.get_state().numpy().copy()
        if self.raw.size < _STATE_KEY + 8 * _MT_WORDS:
            raise ValueError(f"unexpected torch.Generator state of {self.raw.size} bytes")
        left = int(self.raw[_STATE_LEFT : _STATE_LEFT + 4].view(np.int32)[0])
        position = int(self.raw[_STATE_NEXT : _STATE_NEXT + 8].view(np.uint64)[0])
        key = self.raw[_STATE_KEY : _STATE_KEY + 8 * _MT_WORDS].view(np.uint64).astype(np.uint32)
        # torch twists when ``left`` drops to 0 (left == 1: the next word needs a twist); numpy at pos 624
        self.start = {"bit_generator": "MT19937", "state": {"key": key, "pos": _MT_WORDS if left == 1 else position}}
        self.engine = np.random.MT19937()
        self.engine.state = self.start
        self.words: list[int] = []
        self.used = 0

    def _take(self, count: int) -> list[int]:
        short = self.used + count - len(self.words)
        if short > 0:
            self.words.extend(self.engine.random_raw(max(short, 1024)).tolist())
        taken = self.words[self.used : self.used + count]
        self.used += count
        return taken

    def uniform(self) -> float:
        """``float(torch.rand((), dtype=torch.float64))``."""
        high, low = self._take(2)
        return ((high << 32 | low) & _MASK53) * _TWO_TO_MINUS_53

    def randint(self, high_inclusive: int) -> int:
        """``int(torch.randint(high_inclusive + 1, ()))``."""
        span = high_inclusive + 1
        if span >= 1 << 32:
            high, low = self._take(2)
            return (high << 32 | low) % span
        return self._take(1)[0] % span

    def commit(self) -> None:
        """Move the torch generator past the words used (as if torch had drawn them)."""
        if not self.used:
            return
        engine = np.random.MT19937()
        engine.state = self.start
        engine.random_raw(self.used)
        state = engine.state["state"]
        position = int(state["pos"])  # 1..624 after at least one word
        self.raw[_STATE_KEY : _STATE_KEY + 8 * _MT_WORDS] = np.asarray(state["key"], dtype=np.uint64).view(np.uint8)
        self.raw[_STATE_LEFT : _STATE_LEFT + 4] = np.array([_MT_WORDS + 1 - position], dtype=np.int32).view(np.uint8)
        self.raw[_STATE_NEXT : _STATE_NEXT + 8] = np.array([position], dtype=np.uint64).view(np.uint8)
        self.generator.set_state(torch.from_numpy(self.raw))


def _bulk_draws_work() -> bool:
    """Whether :class:`_GeneratorWords` reproduces torch's own draws and end state here (checked once)."""
    global _bulk_checked
    if _bulk_checked is None:
        try:
            ok = True
            for seed in (0, 2**62 + 12345):
                by_torch, by_words = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
                torch.rand((), generator=by_torch)  # start mid-stream too
                torch.rand((), generator=by_words)
                for _ in range(2):  # two calls: the second starts from a committed state
                    words = _GeneratorWords(by_words)
                    # > 624 words: crosses a twist
                    expected = [(_uniform(by_torch, 0.0, 1.0), _randint(by_torch, k % 300)) for k in range(300)]
                    got = [(words.uniform(), words.randint(k % 300)) for k in range(300)]
                    words.commit()
                    ok = ok and got == expected and torch.equal(by_torch.get_state(), by_words.get_state())
            _bulk_checked = ok
        except Exception:  # a torch whose generator state is laid out differently
            _bulk_checked = False
        if not _bulk_checked:
            log.warning("bulk random draws disagree with torch here; drawing crop boxes one torch call at a time")
    return _bulk_checked


def resized_crop(image: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """Crop ``[C, H, W]`` to ``box`` and resize it to ``size``×``size`` (bilinear, antialiased when shrinking)."""
    top, left, h, w = box
    crop = image[:, top : top + h, left : left + w].unsqueeze(0)
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]


def patch_grid(image: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """All ``size``×``size`` windows of ``[C, S, S]`` at ``stride``, row-major: ``[N, C, size, size]``."""
    channels = image.shape[0]
    windows = image.unfold(1, size, stride).unfold(2, size, stride)  # C, gy, gx, size, size
    return windows.permute(1, 2, 0, 3, 4).reshape(-1, channels, size, size)


def grid_nodes(frame_size: int, patch_size: int, patch_stride: int) -> int:
    """Number of patches (walk nodes) per frame: ``((S - P) // stride + 1)²``."""
    side = (frame_size - patch_size) // patch_stride + 1
    return side * side


def _axis_sources(offset: torch.Tensor, start: torch.Tensor, length: torch.Tensor, size: int) -> torch.Tensor:
    """Source coordinates (float64) of ``size`` output pixels resampling ``[start, start + length)`` of an axis.

    The rule of ``F.interpolate(mode="bilinear", align_corners=False)``: output pixel ``i`` reads
    ``(i + 0.5) · length / size - 0.5``, clamped to the crop (``[0, length - 1]``), so border
    pixels never blend with what lies outside the box. ``offset`` places the box's patch in the
    frame. Shapes: ``offset``/``start``/``length`` ``[F, N]`` → ``[F, N, size]``.
    """
    steps = torch.arange(size, dtype=torch.float64, device=length.device) + 0.5
    length = length.to(torch.float64).unsqueeze(-1)
    source = (steps * (length / size) - 0.5).clamp(min=0.0)
    source = torch.minimum(source, length - 1)
    return source + (offset + start).to(torch.float64).unsqueeze(-1)


def cut_patches(frames: torch.Tensor, boxes: torch.Tensor, patch_size: int, patch_stride: int) -> torch.Tensor:
    """Every patch's jittered crop of every frame in one ``grid_sample`` call: ``[F, N, C, P, P]``.

    ``frames`` is ``[F, C, S, S]`` (float, resized frames), ``boxes`` ``[F, N, 4]`` holds each grid
    patch's ``(top, left, h, w)`` inside its ``P``×``P`` window. The same numbers as cropping each
    window and resizing the crop to ``P`` with :func:`resized_crop` (bilinear; patch crops are
    never larger than ``P``, so antialiasing has nothing to do), up to float32 rounding of the
    sampling positions (tested within 1e-4 on real frames). Runs on whatever device ``frames`` is on.
    The result is a permuted view of ``grid_sample``'s output (``collate``'s stack copies it anyway).
    """
    count, channels, side, _ = frames.shape
    nodes = boxes.shape[1]
    grid_side = (side - patch_size) // patch_stride + 1
    boxes = boxes.to(frames.device)
    cells = torch.arange(nodes, device=frames.device)
    origin_y = (cells // grid_side * patch_stride).expand(count, nodes)
    origin_x = (cells % grid_side * patch_stride).expand(count, nodes)
    scale = 2.0 / (side - 1)  # align_corners=True: -1 and 1 are the centres of the border pixels
    ys = (_axis_sources(origin_y, boxes[..., 0], boxes[..., 2], patch_size) * scale - 1.0).float()  # F, N, P
    xs = (_axis_sources(origin_x, boxes[..., 1], boxes[..., 3], patch_size) * scale - 1.0).float()
    grid = torch.empty(count, nodes, patch_size, patch_size, 2, device=frames.device)
    grid[..., 0] = xs.unsqueeze(-2)  # x varies along output columns
    grid[..., 1] = ys.unsqueeze(-1)  # y along output rows
    grid = grid.view(count, nodes * patch_size, patch_size, 2).to(frames.dtype)
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(count, channels, nodes, patch_size, patch_size).transpose(1, 2)


class ClipAugment:
    """``frames [T, H, W, 3] uint8`` + generator → normalised patches ``[T, N, 3, P, P]`` float32.

    ``recipe`` is the recipe's ``augment`` section (missing keys take the paper's values).

    The work splits in two so that the second half can run batched on the GPU
    (``data.augment_on: gpu``): :meth:`prepare` only draws the random boxes (in the order the
    per-patch reference draws them: a frame's box, then its ``N`` patch boxes, frame after frame)
    and hands on the decoded uint8 frames untouched; :meth:`finish` does all the pixel work: the
    antialiased resized crop of each frame (one interpolation per frame), the normalisation and all
    patches of all frames cut by one ``grid_sample``. With ``augment_on: cpu`` the worker runs both
    (:meth:`__call__`). ``methods.crw.reference`` keeps the former one-interpolation-per-patch path.
    """

    def __init__(self, recipe: dict[str, Any] | None = None) -> None:
        cfg = {**DEFAULTS, **(recipe or {})}
        unknown = set(cfg) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown augment keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        self.frame_size = int(cfg["frame_size"])
        self.frame_scale = tuple(float(v) for v in cfg["frame_scale"])
        self.frame_ratio = tuple(float(v) for v in cfg["frame_ratio"])
        self.patch_size = int(cfg["patch_size"])
        self.patch_stride = int(cfg["patch_stride"])
        self.patch_scale = tuple(float(v) for v in cfg["patch_scale"])
        self.patch_ratio = tuple(float(v) for v in cfg["patch_ratio"])
        if self.patch_size > self.frame_size or self.patch_stride <= 0:
            raise ValueError(
                f"patch_size {self.patch_size} / stride {self.patch_stride} do not fit frame_size {self.frame_size}"
            )
        self.mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], dtype=torch.float32).view(1, 3, 1, 1)
        self.nodes = grid_nodes(self.frame_size, self.patch_size, self.patch_stride)

    def draw_boxes(self, height: int, width: int, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame boxes ``[T, 4]`` and patch boxes ``[T, N, 4]`` (top, left, h, w) for ``count`` frames of ``height``×``width``.

        The numbers :func:`random_resized_box` draws one torch call at a time, in the same order
        (a frame's box, then its patch boxes), leaving ``generator`` in the same state; read in
        bulk when ``generator`` is a CPU generator and the bulk reader agrees with torch here.
        """
        words = _GeneratorWords(generator) if generator.device.type == "cpu" and _bulk_draws_work() else None
        uniform, randint = (words.uniform, words.randint) if words is not None else _per_call_draws(generator)
        frame_boxes, patch_boxes = [], []
        size = self.patch_size
        for _ in range(count):
            frame_boxes.append(_box_rule(height, width, self.frame_scale, self.frame_ratio, uniform, randint))
            patch_boxes.append([_box_rule(size, size, self.patch_scale, self.patch_ratio, uniform, randint) for _ in range(self.nodes)])
        if words is not None:
            words.commit()
        return torch.tensor(frame_boxes, dtype=torch.int64), torch.tensor(patch_boxes, dtype=torch.int64)

    def resize_frames(self, video: torch.Tensor, frame_boxes: torch.Tensor) -> torch.Tensor:
        """uint8 frames ``[T, H, W, 3]`` (any device) → their boxes resized to ``[T, 3, S, S]`` in [0, 1].

        One antialiased bilinear interpolation per frame, of the crop only (only the crop is
        converted to float); runs where ``video`` is.
        """
        frames = video.permute(0, 3, 1, 2)
        resized = []
        for frame, (top, left, h, w) in zip(frames, frame_boxes.tolist(), strict=True):
            crop = frame[:, top : top + h, left : left + w].float().div_(255.0)
            resized.append(resized_crop(crop, (0, 0, h, w), self.frame_size))
        return torch.stack(resized)

    def prepare(self, frames: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The worker's part with ``augment_on: gpu``: the decoded frames as a uint8 tensor ``[T, H, W, 3]``
        (no pixel work) with every random box: frame boxes ``[T, 4]``, patch boxes ``[T, N, 4]``."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
        frame_boxes, patch_boxes = self.draw_boxes(frames.shape[1], frames.shape[2], frames.shape[0], generator)
        return torch.from_numpy(np.ascontiguousarray(frames)), frame_boxes, patch_boxes

    def finish(
        self, video: torch.Tensor | Sequence[torch.Tensor], frame_boxes: torch.Tensor, patch_boxes: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`prepare`'s output → normalised patches, on the device ``video`` is on.

        One clip: ``[T, H, W, 3]``, ``[T, 4]``, ``[T, N, 4]`` → ``[T, N, 3, P, P]``. A batch (what
        :func:`~methods.crw.data.collate` makes of it): a list of ``B`` clips' frames (clips of
        different videos differ in size) or a ``[B, T, H, W, 3]`` tensor, with ``[B, T, 4]`` and
        ``[B, T, N, 4]`` boxes → ``[B, T, N, 3, P, P]``. Each clip comes out exactly as on its own.
        """
        if isinstance(video, torch.Tensor) and video.dim() == 4:
            frames = self.resize_frames(video, frame_boxes)
            lead: tuple[int, ...] = (frame_boxes.shape[0],)
        else:
            frames = torch.cat([self.resize_frames(v, b) for v, b in zip(video, frame_boxes, strict=True)])
            lead = tuple(frame_boxes.shape[:2])
        # normalising before resampling is the same (bilinear weights sum to 1) on 3x fewer pixels;
        # in place: the resized frames are this call's own
        frames = frames.sub_(self.mean.to(frames.device)).div_(self.std.to(frames.device))
        patches = cut_patches(frames, patch_boxes.reshape(-1, *patch_boxes.shape[-2:]), self.patch_size, self.patch_stride)
        return patches.reshape(*lead, *patches.shape[1:])

    def __call__(self, frames: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        return self.finish(*self.prepare(frames, generator))
