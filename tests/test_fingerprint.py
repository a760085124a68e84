"""The content fingerprint of a run's inputs: by content, not path or modification time."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from harness.data.fingerprint import (
    data_fingerprint,
    data_fingerprints,
    sequence_digest,
    sequence_fingerprint,
    weights_fingerprint,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "sample" / "davis"
SEQS = ["car-shadow", "motocross-jump"]


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SAMPLE, tmp_path / "davis"))


def test_sequence_fingerprint_matches_a_hand_listing():
    """Names relative to the root, sizes and sha256 of the frame and annotation bytes — nothing else."""
    fp = sequence_fingerprint("davis", SAMPLE, "car-shadow")
    frames = sorted((SAMPLE / "JPEGImages" / "480p" / "car-shadow").glob("*.jpg"))
    masks = sorted((SAMPLE / "Annotations" / "480p" / "car-shadow").glob("*.png"))
    assert len(frames) == 40
    assert fp["frames"] == [[f"JPEGImages/480p/car-shadow/{p.name}", os.path.getsize(p),
                             hashlib.sha256(p.read_bytes()).hexdigest()] for p in frames]
    assert fp["annotations"] == [[f"Annotations/480p/car-shadow/{p.name}", os.path.getsize(p),
                                  hashlib.sha256(p.read_bytes()).hexdigest()] for p in masks]


def test_copy_elsewhere_with_new_mtimes_has_the_same_fingerprint(copy):
    for path in copy.rglob("*"):
        os.utime(path, (1, 1))
    assert data_fingerprint("davis", copy, SEQS) == data_fingerprint("davis", SAMPLE, SEQS)


def test_an_edited_annotation_changes_its_sequence_only(copy):
    before = data_fingerprints("davis", copy, SEQS)
    mask = copy / "Annotations" / "480p" / "car-shadow" / "00010.png"
    data = bytearray(mask.read_bytes())
    data[-20] ^= 0xFF  # same size, different bytes
    mask.write_bytes(bytes(data))
    after = data_fingerprints("davis", copy, SEQS)
    assert after["car-shadow"] != before["car-shadow"]
    assert after["motocross-jump"] == before["motocross-jump"]
    assert data_fingerprint("davis", copy, per_sequence=after) != data_fingerprint("davis", copy, per_sequence=before)


def test_frames_count_by_name_and_size(copy):
    before = sequence_digest("davis", copy, "car-shadow")
    frames = copy / "JPEGImages" / "480p" / "car-shadow"
    (frames / "00039.jpg").unlink()
    assert sequence_digest("davis", copy, "car-shadow") != before
    shutil.copy(SAMPLE / "JPEGImages" / "480p" / "car-shadow" / "00039.jpg", frames / "00039.jpg")
    assert sequence_digest("davis", copy, "car-shadow") == before
    with open(frames / "00039.jpg", "ab") as handle:
        handle.write(b"\0")
    assert sequence_digest("davis", copy, "car-shadow") != before


def test_order_and_selection_of_sequences_count():
    assert data_fingerprint("davis", SAMPLE, SEQS) != data_fingerprint("davis", SAMPLE, SEQS[::-1])
    assert data_fingerprint("davis", SAMPLE, SEQS) != data_fingerprint("davis", SAMPLE, SEQS[:1])


def test_jhmdb_layout_hashes_the_mat_file(tmp_path):
    root = tmp_path / "jhmdb"
    clip = "walk/clip_a"
    (root / "Rename_Images" / clip).mkdir(parents=True)
    (root / "Rename_Images" / clip / "00001.png").write_bytes(b"x" * 10)
    (root / "joint_positions" / clip).mkdir(parents=True)
    mat = root / "joint_positions" / clip / "joint_positions.mat"
    mat.write_bytes(b"joints-1")
    fp = sequence_fingerprint("jhmdb", root, clip)
    assert fp == {"frames": [["Rename_Images/walk/clip_a/00001.png", 10, hashlib.sha256(b"x" * 10).hexdigest()]],
                  "annotations": [["joint_positions/walk/clip_a/joint_positions.mat", 8,
                                   hashlib.sha256(b"joints-1").hexdigest()]]}
    before = sequence_digest("jhmdb", root, clip)
    mat.write_bytes(b"joints-2")
    assert sequence_digest("jhmdb", root, clip) != before


def test_weights_by_content_not_path(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"first")
    first = weights_fingerprint({"checkpoint": str(path), "layer": "x"})
    assert first == {"checkpoint": hashlib.sha256(b"first").hexdigest()}
    path.write_bytes(b"second")  # retrained in place
    assert weights_fingerprint({"checkpoint": str(path)}) != first
    assert weights_fingerprint({}) == {}
