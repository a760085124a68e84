"""DAVIS J&F (region IoU and boundary F-measure), equal to the official davis2017-evaluation.

Semantics follow davis2017-evaluation (semi-supervised mode) to the last detail, because published
DAVIS numbers are only comparable when computed exactly that way:

* objects of a sequence are ids 1..N, N = the largest id of the ground truth's *first* frame; ground-truth
  pixels with 255 (void) or an id above N count as background for every object — in semi-supervised mode
  the official code turns void into background and passes no void mask to J or F, so void pixels are not
  left out of the counts (only the unsupervised task excludes them);
* the first and the last frame are not evaluated (the first is given, the last is dropped by convention),
  and predictions are read for the evaluated frames only; a predicted id above N is an error (the
  official tool prints a line and exits with status 0), an object never predicted is an empty mask;
* unlike the official tool, which ignores prediction files it does not read, a prediction folder must
  name exactly the ground truth's frames (``official_frames`` accepts what the official tool accepts),
  so that predictions numbered from another first frame are refused instead of scored against the
  wrong truth;
* J = |gt & pred| / |gt | pred|, 1 when both are empty;
* F = boundary F-measure: boundaries from the official ``seg2bmap`` (a pixel is a boundary pixel when
  its east, south or south-east neighbour differs; last row looks east only, last column south only, the
  bottom-right pixel never), matched within a disk of radius ceil(0.008 * image diagonal) with the shape
  ``x² + y² <= r²`` (skimage ``disk``, applied with ``cv2.dilate``); precision/recall conventions for
  empty boundaries as in the official ``f_measure``;
* per object: Mean, Recall (fraction of frames > 0.5) and Decay (mean of the first minus the last of
  four bins placed with the official ``round(linspace(1, n, 5) + 1e-10) - 1`` rule; the official code
  casts those bin edges to uint8, which matters only past 256 evaluated frames, where it is a bug that
  this module does not copy).

Speed comes from never building full-frame per-object images: each frame is cropped to the box of its
labelled pixels, the boundary pixels of all objects are found in one pass over the label map, and
"is there a boundary pixel of the other mask within the disk" is answered by dilating bitmaps packed 64
pixels to a word (the disk is a stack of horizontal runs) and looking up the boundary pixels only.
``score_folder`` decodes PNGs in a process pool, one sequence per task. ``tests/test_davis_scorer.py``
checks every per-object number of the official evaluator on 30 real sequences and compares the fast
paths with plain reference versions.
"""

from __future__ import annotations

import ctypes
import functools
import io
import math
import multiprocessing
import os
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from harness.errors import DataError, HarnessError, PredictionError

try:  # zlib-ng inflates the long runs of mask PNGs about 20x faster than zlib; same bytes out
    from zlib_ng import zlib_ng as _inflate
except ImportError:  # pragma: no cover - zlib-ng is a dependency; plain zlib stays correct, only slower
    _inflate = zlib

BOUND_TH = 0.008
VOID = 255
OBJECT_KEYS = ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
GLOBAL_KEYS = ("J&F-Mean",) + OBJECT_KEYS


# -- geometry ------------------------------------------------------------------------------------
def boundary_radius(height: int, width: int) -> int:
    """Match tolerance in pixels: ceil(0.008 * diagonal), computed as the official code does."""
    return int(math.ceil(BOUND_TH * math.sqrt(height * height + width * width)))


def disk_half_widths(radius: int) -> np.ndarray:
    """Half-width of each row of the disk x² + y² <= r²: entry d is the largest w with w² + d² <= r²."""
    return np.array([math.isqrt(radius * radius - d * d) for d in range(radius + 1)], dtype=np.int64)


def boundary_points(labels: np.ndarray, binary: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boundary pixels of every label of a 2-D label map as (label, y, x) arrays, official seg2bmap rule.

    The official rule marks p for object k when [L(p) == k] differs from [L(q) == k] for a neighbour q
    among east, south and south-east. That holds exactly for the labels in {L(p)} ∪ {L(q)} when those
    are not all equal, so one pass over the label map serves all objects. Replicating the last row and
    column reproduces the official edge rules (last row: east only, last column: south only, corner:
    never). Label 0 (background) is included; callers drop it. With ``binary`` (labels 0 and 1 only)
    every edge pixel bounds both labels, so label 1's points are the edge pixels, found without the
    per-neighbour work.
    """
    h, w = labels.shape
    stride = w + 1
    pad = np.empty((h + 2, stride), dtype=labels.dtype)  # row h + 1 only keeps the flat slices in bounds
    pad[:h, :w] = labels
    pad[h, :w] = labels[h - 1]
    pad[: h + 1, w] = pad[: h + 1, w - 1]
    pad[h + 1] = 0
    flat = pad.ravel()
    n = h * stride
    centre = flat[:n]  # compared as flat arrays: one long loop each instead of one per row
    edge = centre != flat[1 : n + 1]
    edge |= centre != flat[stride : n + stride]
    edge |= centre != flat[stride + 1 : n + stride + 1]
    edge.reshape(h, stride)[:, w] = False  # the padding column
    at = np.flatnonzero(edge)
    ys, xs = np.divmod(at, stride)
    if binary:
        return np.ones(len(at), dtype=labels.dtype), ys, xs
    a0, a1, a2, a3 = flat[at], flat[at + 1], flat[at + stride], flat[at + stride + 1]
    m1 = a1 != a0
    m2 = (a2 != a0) & (a2 != a1)
    m3 = (a3 != a0) & (a3 != a1) & (a3 != a2)
    ids = np.concatenate([a0, a1[m1], a2[m2], a3[m3]])
    return ids, np.concatenate([ys, ys[m1], ys[m2], ys[m3]]), np.concatenate([xs, xs[m1], xs[m2], xs[m3]])


def pad_words(radius: int) -> int:
    """Zero words that end every packed row, so that widening a row by up to ``radius`` pixels never
    carries bits into the next row (see ``dilate_packed``)."""
    return radius // 64 + 1


def _widen_rows(flat: np.ndarray, step: int) -> np.ndarray:
    """OR of packed rows, laid end to end in one flat array, shifted by -step, 0 and +step (0 < step < 64).

    Bit i of word j is pixel 64 j + i, so a shift moves bits within each word and carries the ones that
    leave a word into its neighbour; working on the flat array keeps every operation one long loop.
    """
    shift, carry = np.uint64(step), np.uint64(64 - step)
    out = flat | (flat << shift)
    out |= flat >> shift
    out[1:] |= flat[:-1] >> carry
    out[:-1] |= flat[1:] << carry
    return out


@functools.cache
def _disk_plan(radius: int) -> tuple[tuple[int, ...], tuple[tuple[int, int, int], ...]]:
    """Half-widths of the disk's rows and the (width, from width, step) widenings that reach them all.

    Widening a map of half-width v by step s gives half-width v + s when s <= 2 v + 1 (the three shifted
    copies then leave no gap), and a carry reaches only the next word, hence s < 64.
    """
    widths = tuple(int(w) for w in disk_half_widths(radius))
    steps, reached = [], 0
    for width in sorted(set(widths)):
        while reached < width:
            wider = min(width, reached + min(2 * reached + 1, 63))
            steps.append((wider, reached, wider - reached))
            reached = wider
    return widths, tuple(steps)


def dilate_packed(words: np.ndarray, radius: int) -> np.ndarray:
    """Dilation by the disk x² + y² <= r² of bitmaps packed along x ([maps, rows, words] uint64, C order).

    Every row must end with ``pad_words(radius)`` zero words: rows are then widened as one flat array, as
    a pixel only ever receives bits from at most ``radius`` pixels away, which the padding keeps inside
    its own row (the padding itself collects garbage that the caller ignores). The disk is the union
    over d of rectangles |dy| <= d, |dx| <= w(d) (w does not grow with d), so the dilation is
    ``OR_d Vd(Hw(d))``: horizontal dilations by each half-width, then, Horner-like from d = r down, one
    vertical step and one OR per d. Pixels outside the array contribute nothing.
    """
    widths, steps = _disk_plan(radius)
    flat = words.reshape(-1)
    wide = {0: flat}
    for width, narrower, step in steps:
        wide[width] = _widen_rows(wide[narrower], step)
    wide = {width: rows.reshape(words.shape) for width, rows in wide.items()}
    acc = wide[widths[radius]]
    for d in range(radius - 1, -1, -1):
        taller = acc | wide[widths[d]]
        taller[:, 1:] |= acc[:, :-1]
        taller[:, :-1] |= acc[:, 1:]
        acc = taller
    return acc


def match_counts(
    py: np.ndarray, px: np.ndarray, gy: np.ndarray, gx: np.ndarray, radius: int
) -> tuple[int, int]:
    """(predicted boundary pixels within the disk of a GT one, GT boundary pixels within that of a predicted one).

    Equals counting ``boundary & dilate(other boundary, disk)`` as the official code does. Both point sets
    are drawn on one grid spanning them (no margin needed: only the points themselves are looked up, and
    every point that can reach them lies on the grid), packed 64 pixels to a word so that the dilation
    handles 64 pixels per operation. Both inputs must be non-empty.
    """
    y0 = min(int(py.min()), int(gy.min()))
    x0 = min(int(px.min()), int(gx.min()))
    height = max(int(py.max()), int(gy.max())) - y0 + 1
    n_words = (max(int(px.max()), int(gx.max())) - x0) // 64 + 1 + pad_words(radius)
    py, px, gy, gx = py - y0, px - x0, gy - y0, gx - x0
    grid = np.zeros((2, height, n_words * 64), dtype=bool)
    grid[0, gy, gx] = True
    grid[1, py, px] = True
    dilated = dilate_packed(np.packbits(grid, axis=-1, bitorder="little").view("<u8"), radius)
    one = np.uint64(1)
    # predicted points look into the dilated GT (first), GT points into the dilated prediction (second)
    fg = (dilated[0, py, px >> 6] >> (px & 63).astype(np.uint64)) & one
    gt = (dilated[1, gy, gx >> 6] >> (gx & 63).astype(np.uint64)) & one
    return int(np.count_nonzero(fg)), int(np.count_nonzero(gt))


def f_measure(n_fg: int, n_gt: int, fg_match: int, gt_match: int) -> float:
    """Boundary F from boundary sizes and match counts, with the official conventions for empty boundaries."""
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision, recall = fg_match / float(n_fg), gt_match / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def frame_values(gt: np.ndarray, pred: np.ndarray, n_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """J and F of objects 1..n_objects in one frame; ``gt`` and ``pred`` hold only ids 0..n_objects."""
    j = np.ones(n_objects)
    f = np.ones(n_objects)
    both = gt | pred
    rows = np.flatnonzero(both.max(axis=1))
    if rows.size == 0:
        return j, f
    cols = np.flatnonzero(both[rows[0] : rows[-1] + 1].max(axis=0))
    height, width = gt.shape
    # Everything outside this box is background in both maps; one extra row/column on each side keeps
    # the boundary pixels that seg2bmap puts just outside an object.
    y0, y1 = max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, height)
    x0, x1 = max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, width)
    g, p = gt[y0:y1, x0:x1], pred[y0:y1, x0:x1]
    single = n_objects == 1  # then both maps hold 0/1 and are the object's masks themselves
    g_ids, g_y, g_x = boundary_points(g, binary=single)
    p_ids, p_y, p_x = boundary_points(p, binary=single)
    radius = boundary_radius(height, width)
    for k in range(1, n_objects + 1):
        gk, pk = (g.view(bool), p.view(bool)) if single else (g == k, p == k)
        inter = np.count_nonzero(gk & pk)
        union = np.count_nonzero(gk) + np.count_nonzero(pk) - inter
        j[k - 1] = inter / union if union else 1.0
        on_g, on_p = g_ids == k, p_ids == k
        n_gt, n_fg = int(np.count_nonzero(on_g)), int(np.count_nonzero(on_p))
        fg_match = gt_match = 0
        if n_gt and n_fg:
            fg_match, gt_match = match_counts(p_y[on_p], p_x[on_p], g_y[on_g], g_x[on_g], radius)
        f[k - 1] = f_measure(n_fg, n_gt, fg_match, gt_match)
    return j, f


# -- statistics ----------------------------------------------------------------------------------
def statistics(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, Recall (fraction > 0.5) and Decay (first minus last of four official bins) of per-frame values."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(np.mean(values))
    recall = float(np.mean(values > 0.5))
    edges = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64)
    first = values[edges[0] : edges[1] + 1]
    last = values[edges[3] : edges[4] + 1]
    return mean, recall, float(np.mean(first) - np.mean(last))


def _summarise(j: np.ndarray, f: np.ndarray) -> dict[int, dict[str, float]]:
    """Per-object scores from per-frame J and F of shape [frames, objects]."""
    out = {}
    for k in range(j.shape[1]):
        jm, jr, jd = statistics(j[:, k])
        fm, fr, fd = statistics(f[:, k])
        out[k + 1] = {"J-Mean": jm, "J-Recall": jr, "J-Decay": jd, "F-Mean": fm, "F-Recall": fr, "F-Decay": fd}
    return out


def _gt_ids(gt: np.ndarray, n_objects: int) -> np.ndarray:
    """Ground truth with void and ids above n_objects turned into background, as uint8."""
    if int(gt.max(initial=0)) <= n_objects and gt.dtype == np.uint8:
        return gt
    lut = np.zeros(256, dtype=np.uint8)
    lut[1 : n_objects + 1] = np.arange(1, n_objects + 1)
    return lut[np.clip(gt, 0, 255).astype(np.uint8)]


def _extra_ids(pred: np.ndarray, n_objects: int) -> list[int]:
    """Predicted ids outside 0..n_objects (none when the prediction is valid)."""
    if int(pred.max(initial=0)) <= n_objects and int(pred.min(initial=0)) >= 0:
        return []
    values = np.unique(pred)
    return [int(v) for v in values if v < 0 or v > n_objects]


def object_scores(gt: np.ndarray, pred: np.ndarray, n_objects: int) -> dict[int, dict[str, float]]:
    """Official per-object J/F statistics of one sequence.

    ``gt`` and ``pred`` are [T, H, W] id maps (T >= 3; the first and last frame are not scored). ``gt``
    may hold 255 (void) and ids above ``n_objects``: both count as background. Raises PredictionError
    when the shapes differ or an evaluated predicted frame holds an id outside 0..n_objects.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise PredictionError(f"prediction has shape {pred.shape}, ground truth {gt.shape}")
    if gt.ndim != 3 or gt.shape[0] < 3:
        raise PredictionError(f"expected [T, H, W] id maps with T >= 3 (the first and last frame are not "
                              f"scored), got shape {gt.shape}")
    if not (np.issubdtype(pred.dtype, np.integer) or pred.dtype == bool):
        raise PredictionError(f"predictions must be integer object ids, got dtype {pred.dtype}")
    for t in range(1, gt.shape[0] - 1):
        extra = _extra_ids(pred[t], n_objects)
        if extra:
            raise PredictionError(f"predicted ids {extra} at frame {t} are not objects of the ground truth "
                                  f"(ids 1..{n_objects})")
    j = np.empty((gt.shape[0] - 2, n_objects))
    f = np.empty_like(j)
    for t in range(1, gt.shape[0] - 1):
        j[t - 1], f[t - 1] = frame_values(_gt_ids(gt[t], n_objects), pred[t].astype(np.uint8), n_objects)
    return _summarise(j, f)


def sequence_summary(objects: list[dict[str, float]]) -> dict[str, Any]:
    """A sequence's line in ``per_sequence``: its object count and the means of its objects' J and F."""
    j = float(np.mean([o["J-Mean"] for o in objects]))
    f = float(np.mean([o["F-Mean"] for o in objects]))
    return {"n_objects": len(objects), "J-Mean": j, "F-Mean": f, "J&F-Mean": (j + f) / 2}


def global_scores(per_object: dict[str, dict[str, float]]) -> dict[str, float]:
    """Official global numbers: means over all objects; J&F-Mean = (J-Mean + F-Mean) / 2."""
    if not per_object:
        raise HarnessError("no objects were scored")
    out = {key: float(np.mean([scores[key] for scores in per_object.values()])) for key in OBJECT_KEYS}
    return {"J&F-Mean": (out["J-Mean"] + out["F-Mean"]) / 2, **out}


# -- reading PNGs --------------------------------------------------------------------------------
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _decode_plain_png(data: bytes) -> np.ndarray | None:
    """Fast path for the PNGs DAVIS tools write (8-bit palette or grey, not interlaced, no row filters).

    Pillow spends most of its time on such files in zlib and in its own chunked reading; scoring decodes
    thousands of them, so these are inflated directly (with zlib-ng). Returns None for anything else,
    damaged files included, which then go through Pillow and its error messages.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return None
    pos, chunks, size = 8, [], None
    try:
        while pos + 8 <= len(data):
            length, kind = struct.unpack_from(">I4s", data, pos)
            body = pos + 8
            if body + length + 4 > len(data):
                return None
            if kind == b"IHDR":
                width, height, depth, colour, _, _, interlace = struct.unpack_from(">IIBBBBB", data, body)
                if depth != 8 or colour not in (0, 3) or interlace != 0 or width * height > Image.MAX_IMAGE_PIXELS:
                    return None  # anything unusual, or huge enough for Pillow's decompression-bomb check
                size = (height, width)
            elif kind == b"IDAT":
                chunks.append(data[body : body + length])
            elif kind == b"IEND":
                break
            pos = body + length + 4
        if size is None or not chunks:
            return None
        height, width = size
        raw = _inflate.decompress(b"".join(chunks), bufsize=height * (width + 1))
    except (struct.error, _inflate.error):
        return None
    if len(raw) != height * (width + 1):
        return None
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, width + 1)
    if rows[:, 0].any():  # some row uses a PNG filter
        return None
    return rows[:, 1:]


def read_id_png(path: str | Path, error: type[HarnessError]) -> np.ndarray:
    """A single-channel PNG (palette indices or grey values) as a 2-D array; failures name the file."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError as err:
        raise error(f"missing file {path}") from err
    except OSError as err:
        raise error(f"cannot read {path}: {err}") from err
    fast = _decode_plain_png(data)
    if fast is not None:
        return fast
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image)
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise error(f"cannot read PNG {path}: {err} (truncated or corrupt file?)") from err
    if array.ndim != 2:
        raise error(f"{path} is a {mode} image; expected a single-channel PNG of object ids "
                    "(palette/mode P as the DAVIS tools write, or greyscale)")
    return array.astype(np.uint8) if array.dtype == bool else array


# -- scoring a folder ----------------------------------------------------------------------------
def _score_sequence(job: tuple[str, list[str], list[str], bool]) -> tuple[str, int, dict[int, dict[str, float]]]:
    """Worker: decode one sequence's evaluated frames and score them (runs in a pool process)."""
    name, gt_paths, pred_paths, binary_gt = job
    first = read_id_png(gt_paths[0], DataError)
    n_objects = int((first > 127).any()) if binary_gt else int(first[first != VOID].max(initial=0))
    if n_objects == 0:
        raise DataError(f"first-frame annotation {gt_paths[0]} contains no object")
    j = np.empty((len(gt_paths) - 2, n_objects))
    f = np.empty_like(j)
    for t in range(1, len(gt_paths) - 1):
        gt = read_id_png(gt_paths[t], DataError)
        gt = (gt > 127).astype(np.uint8) if binary_gt else _gt_ids(gt, n_objects)
        pred = read_id_png(pred_paths[t], PredictionError)
        if pred.shape != gt.shape:
            raise PredictionError(f"prediction {pred_paths[t]} is {pred.shape[1]}x{pred.shape[0]}, its ground "
                                  f"truth {gt_paths[t]} is {gt.shape[1]}x{gt.shape[0]}")
        extra = _extra_ids(pred, n_objects)
        if extra:
            hint = " (0/255 masks? predictions must hold object ids)" if 255 in extra else ""
            raise PredictionError(f"prediction {pred_paths[t]} holds ids {extra} that are not objects of "
                                  f"{name} (ids 1..{n_objects} from {gt_paths[0]}){hint}")
        j[t - 1], f[t - 1] = frame_values(gt, pred.astype(np.uint8, copy=False), n_objects)
    return name, n_objects, _summarise(j, f)


def _keep_freed_memory() -> None:
    """Pool initializer: let the worker's allocator keep freed memory (glibc ``mallopt``).

    Every frame allocates and frees the same few-hundred-kB temporaries; with glibc's defaults they are
    handed back to the system and faulted in again each time, which cost about a tenth of the scoring
    time in system CPU. Only the pool's own worker processes are changed; other C libraries are left as
    they are.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (or no C library to load): defaults stay
        return
    mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: keep up to 256 MiB of free heap
    mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD: blocks below 64 MiB come from the heap, not fresh mappings


#: how many unmatched prediction files an error names before counting the rest
SHOWN_FILES = 10


def prediction_problems(annotations_dir: Path, pred_dir: Path, sequences: list[str], *,
                        official_frames: bool = False) -> tuple[list[str], list[str]]:
    """``(problems, ignored)``: how ``pred_dir/<seq>/*.png`` fails to pair up with the ground truth's frames.

    By default every ground-truth frame needs its prediction and every prediction its ground-truth frame:
    predictions numbered from 00001 instead of 00000 otherwise score each mask against the next frame's
    truth. ``official_frames`` accepts what the official evaluator accepts — no prediction for the first
    and last frame (it reads neither), and files for frames without ground truth, which it ignores
    (returned in ``ignored`` so that they can be listed). A missing frame in between is always a problem.
    Files that are not PNGs and folders inside a sequence's folder are not predictions and are not looked at.
    """
    problems: list[str] = []
    ignored: list[str] = []
    for name in sequences:
        gt_dir = annotations_dir / name
        if not gt_dir.is_dir():
            continue  # the ground truth's own problem, reported by the scorer
        frames = sorted(f for f in os.listdir(gt_dir) if f.endswith(".png"))
        folder = pred_dir / name
        predicted = ({f for f in os.listdir(folder) if f.lower().endswith(".png") and (folder / f).is_file()}
                     if folder.is_dir() else set())
        needed = frames[1:-1] if official_frames else frames
        missing = [f for f in needed if f not in predicted]
        extra = sorted(predicted - set(frames))
        shift = _shift(frames, sorted(predicted))
        if shift:
            first, last = min(predicted), max(predicted)
            problems.append(f"{folder}: predictions {first} … {last} are the ground truth's frames {frames[0]} … "
                            f"{frames[-1]} ({gt_dir}) shifted by {shift:+d}; each mask would be scored against "
                            "another frame's truth")
        problems += [f"{folder / f}: missing prediction for ground-truth frame {gt_dir / f}" for f in missing]
        if official_frames:
            ignored += [str(folder / f) for f in extra]
        else:
            problems += [f"{folder / f}: prediction for a frame with no ground truth in {gt_dir}" for f in extra]
    return problems, ignored


def _shift(frames: list[str], predicted: list[str]) -> int:
    """By how many frames numbered predictions are offset from the numbered ground truth (0: not a shift)."""
    try:
        truth, pred = [int(Path(f).stem) for f in frames], [int(Path(f).stem) for f in predicted]
    except ValueError:
        return 0
    if not truth or len(pred) != len(truth) or pred == truth:
        return 0
    offset = pred[0] - truth[0]
    return offset if [p - offset for p in pred] == truth else 0


def require_matching_predictions(annotations_dir: Path, pred_dir: Path, sequences: list[str], *,
                                 official_frames: bool = False) -> list[str]:
    """Raise :class:`PredictionError` naming the files when :func:`prediction_problems` finds any;
    returns the files ignored under ``official_frames``."""
    problems, ignored = prediction_problems(annotations_dir, pred_dir, sequences, official_frames=official_frames)
    if problems:
        shown = "\n".join(f"  {line}" for line in problems[:SHOWN_FILES])
        more = f"\n  … and {len(problems) - SHOWN_FILES} more" if len(problems) > SHOWN_FILES else ""
        hint = ("" if official_frames else "\nPredictions must name exactly the ground truth's frames; "
                "--official-frames accepts what the official evaluator accepts (no first/last frame, "
                "files for frames without ground truth ignored).")
        raise PredictionError(f"predictions in {pred_dir} do not pair up with the ground truth "
                              f"({len(problems)} problem(s)):\n{shown}{more}{hint}")
    return ignored


def _jobs(annotations_dir: Path, pred_dir: Path, sequences: list[str], binary_gt: bool,
          official_frames: bool) -> list[tuple]:
    """Per-sequence work items; checks up front that predictions and ground-truth frames pair up."""
    if len(set(sequences)) != len(sequences):
        raise HarnessError(f"sequences listed more than once: {sorted({s for s in sequences if sequences.count(s) > 1})}")
    if not pred_dir.is_dir():
        raise PredictionError(f"prediction folder {pred_dir} does not exist")
    jobs = []
    for name in sequences:
        gt_dir = annotations_dir / name
        if not gt_dir.is_dir():
            raise DataError(f"annotation folder {gt_dir} does not exist")
        frames = sorted(f for f in os.listdir(gt_dir) if f.endswith(".png"))
        if len(frames) < 3:
            raise DataError(f"{gt_dir} has {len(frames)} annotated frames; DAVIS scoring needs at least 3 "
                            "(the first and last frame are not scored)")
        jobs.append((name, [os.path.join(gt_dir, f) for f in frames],
                     [os.path.join(pred_dir, name, f) for f in frames], binary_gt))
    ignored = require_matching_predictions(annotations_dir, pred_dir, sequences, official_frames=official_frames)
    if ignored:
        print(f"warning: {len(ignored)} prediction file(s) have no ground-truth frame and are ignored, as the "
              f"official evaluator does: {', '.join(ignored[:SHOWN_FILES])}"
              + (" …" if len(ignored) > SHOWN_FILES else ""), file=sys.stderr)
    return jobs


def score_folder(
    annotations_dir: Path,
    pred_dir: Path,
    sequences: list[str],
    *,
    binary_gt: bool = False,
    processes: int | None = None,
    progress: bool = True,
    official_frames: bool = False,
) -> dict[str, Any]:
    """Score ``pred_dir/<seq>/<frame>.png`` against ``annotations_dir/<seq>/<frame>.png`` (official layout).

    ``binary_gt`` reads DAVIS-2016 ground truth (greyscale, object where > 127, one object). Only the
    evaluated frames (all but the first and last) of the predictions are read, as in the official tool.
    Returns ``{"metrics", "per_sequence", "per_object"}`` with fractions; sequences are scored in a pool
    of ``processes`` workers (default: all CPUs). Predictions and ground-truth frames must pair up
    one to one, or as the official evaluator requires with ``official_frames``
    (:func:`prediction_problems`).
    """
    if not sequences:
        raise HarnessError("no sequences to score")
    jobs = _jobs(Path(annotations_dir), Path(pred_dir), list(sequences), binary_gt, official_frames)
    # Longest sequences first, so that no worker is left with a long one at the end.
    jobs.sort(key=lambda job: len(job[1]), reverse=True)
    processes = max(1, min(processes or os.cpu_count() or 1, len(jobs)))
    bar = tqdm(total=len(jobs), desc="scoring", unit="seq", disable=not progress)
    results = {}
    try:
        if processes == 1:
            for job in jobs:
                name, n_objects, objects = _score_sequence(job)
                results[name] = (n_objects, objects)
                bar.update()
        else:
            context = multiprocessing.get_context()
            with context.Pool(processes, initializer=_keep_freed_memory) as pool:
                for name, n_objects, objects in pool.imap_unordered(_score_sequence, jobs):
                    results[name] = (n_objects, objects)
                    bar.update()
    finally:
        bar.close()
    per_object: dict[str, dict[str, float]] = {}
    per_sequence: dict[str, dict[str, Any]] = {}
    for name in sequences:
        n_objects, objects = results[name]
        for k, scores in objects.items():
            per_object[f"{name}_{k}"] = scores
        j = float(np.mean([o["J-Mean"] for o in objects.values()]))
        f = float(np.mean([o["F-Mean"] for o in objects.values()]))
        per_sequence[name] = {"J-Mean": j, "F-Mean": f, "J&F-Mean": (j + f) / 2, "n_objects": n_objects}
    return {"metrics": global_scores(per_object), "per_sequence": per_sequence, "per_object": per_object}
