"""VFS's published numbers are compared under VFS's own test settings, registered by its package."""

from __future__ import annotations

from harness.engine.protocol import protocol_families, resolve_protocol
from harness.leaderboard.reported import load_reported
from harness.resources import results_dir


def test_vfs_family_is_the_release_test_cfg() -> None:
    assert "vfs" in protocol_families()
    p = resolve_protocol("vfs", "davis")
    # methods/vfs/README.md: precede_frames 20, with_first, topk 10, temperature 0.07, neighbor_range 24 -> radius 12,
    # with_first_neighbor (the first frame windowed too), no padding with frame 0
    assert (p.context, p.keep_first, p.topk, p.temperature, p.radius, p.window) == (20, True, 10, 0.07, 12.0, "disk")
    assert p.restrict_first and not p.pad_with_first
    assert p.hash != resolve_protocol("crw", "davis").hash


def test_vfs_published_rows_sit_in_the_vfs_group() -> None:
    rows = [e for e in load_reported(results_dir() / "reported.yaml") if e.method == "VFS"]
    assert len(rows) == 3 and {e.group.family for e in rows} == {"vfs"}
