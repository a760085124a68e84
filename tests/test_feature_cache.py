"""``harness run --feature-cache``: a run from cached features scores exactly as a plain run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.config import RunConfig, parse_sets
from harness.method import Method
from harness.runs.runner import run

SAMPLE = Path(__file__).resolve().parents[1] / "datasets" / "sample" / "davis"


def tiny_davis_root(dest: Path, frames: int = 4) -> Path:
    """One real sequence of the shipped sample, first few frames, in the DAVIS-2017 layout."""
    for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
        out = dest / sub / "480p" / "car-shadow"
        out.mkdir(parents=True)
        for path in sorted((SAMPLE / sub / "480p" / "car-shadow").glob(f"*.{ext}"))[:frames]:
            shutil.copy(path, out / path.name)
    (dest / "ImageSets" / "2017").mkdir(parents=True)
    (dest / "ImageSets" / "2017" / "val.txt").write_text("car-shadow\n")
    return dest


def _record(root: Path, out: Path, cache: Path | None, topk: int = 10) -> dict:
    config = RunConfig(method="pixels", task="davis", data_root=str(root), out_dir=str(out), device="cpu",
                       overrides=parse_sets([f"protocol.topk={topk}"]),
                       feature_cache=str(cache) if cache else None)
    return json.loads(Path(run(config)).read_text())


def test_cached_features_give_the_same_record_metrics(tmp_path, monkeypatch, single_thread):
    root = tiny_davis_root(tmp_path / "davis")
    cache = tmp_path / "cache"
    plain = _record(root, tmp_path / "plain", None)
    stored = _record(root, tmp_path / "store", cache)
    assert len(list(cache.rglob("*.pt"))) == 1  # one sequence, one entry

    def no_features(self, frames):
        raise AssertionError("features were recomputed although the cache holds them")

    monkeypatch.setattr(Method, "features", no_features)
    reused = _record(root, tmp_path / "reuse", cache, topk=5)  # another protocol: only the cache can serve it
    again = _record(root, tmp_path / "again", cache)
    monkeypatch.undo()
    plain_topk5 = _record(root, tmp_path / "plain5", None, topk=5)
    for cached, reference in ((stored, plain), (again, plain), (reused, plain_topk5)):
        assert cached["metrics"] == reference["metrics"]
        assert cached["per_sequence"] == reference["per_sequence"]
        assert cached["per_object"] == reference["per_object"]
    assert reused["protocol"]["hash"] != plain["protocol"]["hash"]
    # the record says where its features came from: a hit's features time is only a file load
    assert "feature_cache" not in plain["timing"]
    assert stored["timing"]["feature_cache"] == {"hits": 0, "misses": 1}
    assert reused["timing"]["feature_cache"] == again["timing"]["feature_cache"] == {"hits": 1, "misses": 0}


def test_key_follows_frames_and_method_options():
    from harness.registry import get_method
    from harness.runs.feature_cache import cache_key

    method = get_method("pixels").factory({"device": "cpu"})
    frames = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    base = RunConfig(method="pixels", task="davis")
    key = cache_key(base, method, frames)
    assert cache_key(base, method, frames.copy()) == key
    changed = frames.copy()
    changed[1, 3, 3, 0] = 1
    assert cache_key(base, method, changed) != key
    assert cache_key(base, method, frames[:1]) != key
    other = RunConfig(method="random-resnet18", task="davis")
    assert cache_key(other, method, frames) != key


@pytest.mark.parametrize("bad", [b"", b"not a tensor"])
def test_unreadable_entry_is_recomputed(tmp_path, bad, single_thread):
    root = tiny_davis_root(tmp_path / "davis", frames=3)
    cache = tmp_path / "cache"
    first = _record(root, tmp_path / "a", cache)
    (entry,) = cache.rglob("*.pt")
    entry.write_bytes(bad)
    second = _record(root, tmp_path / "b", cache)
    assert second["metrics"] == first["metrics"]
    assert entry.stat().st_size > len(bad)  # rewritten with the recomputed features
