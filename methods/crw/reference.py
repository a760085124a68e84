"""The simple training-data path the fast one is checked and benchmarked against.

This is the pipeline as it first was: every decoded frame that might be wanted is converted to
an RGB array on the spot (:func:`decode_file_reference`), and each frame's patches are cut one
``F.interpolate`` at a time (:class:`PerPatchAugment`), drawing the random boxes in the same order
as :class:`methods.crw.augment.ClipAugment`. ``tests/test_crw_pipeline.py`` compares the two on real
frames and ``harness bench train --loader-only`` times them side by side. Nothing in training uses it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from harness.errors import DataError
from methods.crw.augment import ClipAugment, patch_grid, random_resized_box, resized_crop
from methods.crw.data import REORDER_SLACK, VideoEntry, decode_frames


class PerPatchAugment(ClipAugment):
    """One antialiased interpolation per patch; same settings, same boxes, same output as ``ClipAugment``."""

    def frame_patches(self, frame: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One float ``[3, H, W]`` frame in [0, 1] → jittered patches ``[N, 3, P, P]`` (not normalised)."""
        box = random_resized_box(frame.shape[1], frame.shape[2], self.frame_scale, self.frame_ratio, generator)
        frame = resized_crop(frame, box, self.frame_size)
        patches = patch_grid(frame, self.patch_size, self.patch_stride)
        out = torch.empty_like(patches)
        for n, patch in enumerate(patches):
            box = random_resized_box(self.patch_size, self.patch_size, self.patch_scale, self.patch_ratio, generator)
            out[n] = resized_crop(patch, box, self.patch_size)
        return out

    def unnormalised(self, frames: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        """Patches ``[T, N, 3, P, P]`` in [0, 1], before the mean/std normalisation."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
        return torch.stack([self.frame_patches(frame, generator) for frame in video])

    def __call__(self, frames: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        return (self.unnormalised(frames, generator) - self.mean) / self.std


def decode_file_reference(video: VideoEntry, frames: Sequence[int]) -> np.ndarray:
    """:func:`methods.crw.data.decode_frames` for files, converting every candidate frame as it is decoded."""
    import av

    if video.kind != "file":
        return decode_frames(video, frames)
    wanted = sorted({video.pts[i] for i in frames})
    best: dict[int, tuple[int, np.ndarray]] = {}
    past_last = 0
    try:
        with av.open(str(video.path)) as container:
            stream = container.streams.video[0]
            container.seek(wanted[0], stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                pts = frame.pts
                if pts is None:
                    continue
                if pts > wanted[-1]:
                    past_last += 1
                    if past_last >= REORDER_SLACK:
                        break
                    continue
                takers = [w for w in wanted if w >= pts and (w not in best or best[w][0] < pts)]
                if takers:
                    image = frame.to_ndarray(format="rgb24")
                    best.update((w, (pts, image)) for w in takers)
                if all(w in best and best[w][0] == w for w in wanted):
                    break
    except Exception as err:  # PyAV raises many error types for broken files
        raise DataError(f"{video.path}: cannot decode frames ({type(err).__name__}: {err})") from err
    missing = [w for w in wanted if w not in best]
    if missing:
        raise DataError(f"{video.path}: {len(missing)} frame(s) could not be decoded (pts {missing[:3]})")
    return np.stack([best[video.pts[i]][1] for i in frames])
