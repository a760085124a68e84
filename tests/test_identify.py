"""Dataset identity from the data itself (names + first-frame object counts vs the official lists),
and which runs are smoke runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.data.identify import (
    describe_run_data,
    identify,
    objects_from_scores,
    official_splits,
    smoke_reasons,
)
from tests.test_runner import small_davis_root

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "sample" / "davis"
SHARED = REPO.parent / "shared"
OFFICIAL_SCORES = SHARED / "reference" / "davis2017_official_scores_osvos-gt_rvos-pred.json"


def _split(card: str, name: str):
    return next(s for s in official_splits(card) if s.split == name)


@pytest.mark.skipif(not OFFICIAL_SCORES.is_file(), reason="../shared/reference (official DAVIS-2017 scores) is absent")
def test_davis2017_card_matches_the_official_evaluation_kit() -> None:
    # The official evaluator's per-object results on all of val name every object of every sequence.
    per_object = json.loads(OFFICIAL_SCORES.read_text())["per_object"]
    counts: dict[str, int] = {}
    for key in per_object:
        name, _, ident = key.rpartition("_")
        counts[name] = max(counts.get(name, 0), int(ident))
    val = _split("davis2017", "val")
    assert dict(val.objects) == counts
    assert val.size == 30 and sum(counts.values()) == 61


def test_official_list_sizes() -> None:
    davis2016 = _split("davis2016", "val")
    assert davis2016.size == 20 and set(davis2016.objects.values()) == {1}
    assert set(davis2016.objects) <= set(_split("davis2017", "val").objects)  # 2016 val lies inside 2017 val
    assert _split("jhmdb", "split 1 test").size == 268
    assert _split("vip", "val").size == 50 and _split("vip", "val").objects is None


def test_single_object_sequences_in_any_layout_are_davis2016() -> None:
    # motocross-jump has 2 objects in DAVIS-2017: one object per sequence can only be DAVIS-2016.
    one_each = {"car-shadow": 1, "motocross-jump": 1}
    assert identify("davis", one_each)["label"] == "DAVIS-2016 val, 2 of 20 sequences"
    assert identify("davis2016", one_each)["name"] == "DAVIS-2016"
    real_2017 = {"car-shadow": 1, "motocross-jump": 2}
    assert identify("davis", real_2017) == {"name": "DAVIS-2017", "split": "val", "sequences": 2, "of_split": 30,
                                            "label": "DAVIS-2017 val, 2 of 30 sequences"}
    full = dict(_split("davis2017", "val").objects)
    assert identify("davis", full)["label"] == "DAVIS-2017 val, all 30 sequences"
    # Names outside every list, or wrong object counts, are not an official split.
    odd = identify("davis", {"my-video": 1})
    assert odd["split"] is None and "not in DAVIS-2017 val or DAVIS-2016 val" in odd["label"]
    assert identify("davis", {"blackswan": 3})["split"] is None


def test_object_counts_come_from_scores_old_and_new() -> None:
    per_sequence = {"dogs-jump": {"n_objects": 3}, "dog": {"J-Mean": 0.5}}
    per_object = {"dog_1": {}, "dogs-jump_1": {}, "dogs-jump_2": {}}
    assert objects_from_scores(per_sequence, per_object) == {"dogs-jump": 3, "dog": 1}
    assert objects_from_scores({"catch/clip": {"PCK@0.1": 0.4}}, None) == {"catch/clip": None}


@pytest.mark.parametrize(
    ("data", "dataset", "reason"),
    [
        ({"limit": 3}, identify("davis2016", {"blackswan": 1, "dog": 1, "libby": 1}), "--limit 3"),
        ({"sample": True}, identify("davis", {"car-shadow": 1, "motocross-jump": 1}), "the shipped sample"),
        ({"root": "datasets/sample/davis"}, identify("davis", {"car-shadow": 1}), "the shipped sample"),
        ({}, identify("jhmdb", {"catch/Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2": None}), "1 of 268 clips"),
        ({"sample": True}, identify("vip", {"synthetic_00": None}, synthetic=True), "synthetic data"),
        ({}, identify("davis", {"blackswan": 1}), "1 of 30 sequences"),  # 1 object in both: the task's own
    ],
)
def test_smoke_runs(data, dataset, reason) -> None:
    assert any(reason in r for r in smoke_reasons(dataset, data)), smoke_reasons(dataset, data)


def test_ten_of_twenty_is_ranked_and_a_synthetic_sample_is_labelled() -> None:
    ten = {name: 1 for name in list(_split("davis2016", "val").objects)[:10]}
    dataset, smoke = describe_run_data("davis", {"sequences": list(ten)}, {n: {"n_objects": 1} for n in ten})
    assert dataset["label"] == "DAVIS-2016 val, 10 of 20 sequences" and smoke is False
    clips = sorted(_split("jhmdb", "split 1 test").objects)
    assert smoke_reasons(identify("jhmdb", dict.fromkeys(clips[:27])), {}) == []  # 10% of 268, rounded up
    assert smoke_reasons(identify("jhmdb", dict.fromkeys(clips[:26])), {}) == ["26 of 268 clips (under 10% of the split)"]
    vip, smoke = describe_run_data("vip", {"root": str(REPO / "datasets/sample/vip"), "sample": True,
                                           "sequences": ["synthetic_00"]}, {"synthetic_00": {"mIoU": 0.5}})
    assert smoke and "synthetic" in vip["label"] and "not VIP" in vip["label"]


def test_task_davis_on_2016_data_is_labelled_davis2016_in_the_record_and_on_the_page(tmp_path, capsys) -> None:
    from harness.leaderboard import build_leaderboard

    root = small_davis_root(tmp_path / "data", frames=3, sequences=("motocross-jump",))  # 2 objects in DAVIS-2017, 1 here
    code = main(["run", "--method", "pixels", "--task", "davis", "--data-root", str(root),
                 "--out-dir", str(tmp_path / "runs" / "davis" / "pixels")])
    assert code == 0
    record_path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    record = json.loads(record_path.read_text())
    assert record["task"] == "davis"
    assert record["data"]["dataset"] == {"name": "DAVIS-2016", "split": "val", "sequences": 1, "of_split": 20,
                                         "label": "DAVIS-2016 val, 1 of 20 sequences"}
    assert record["smoke"] is True  # 1 of 20 is under 10%
    out = tmp_path / "board"
    build_leaderboard([tmp_path / "runs"], out)
    md = (out / "leaderboard.md").read_text()
    assert "DAVIS-2016 val, 1 of 20 sequences" in md
    assert "DAVIS-2017" not in md.split("Smoke runs")[1]


@pytest.mark.skipif(not (SHARED / "data" / "davis2017-layout-val10").is_dir(), reason="../shared/data is absent")
def test_shared_2017_layout_copy_of_davis2016_is_identified_as_davis2016() -> None:
    import numpy as np
    from PIL import Image

    root = SHARED / "data" / "davis2017-layout-val10"
    names = (root / "ImageSets" / "2017" / "val.txt").read_text().split()
    objects = {}
    for name in names:  # the first-frame annotation's largest id, as the DAVIS task counts objects
        first = sorted((root / "Annotations" / "480p" / name).glob("*.png"))[0]
        ids = np.array(Image.open(first))
        objects[name] = int(ids[ids != 255].max())
    assert identify("davis", objects)["label"] == "DAVIS-2016 val, 10 of 20 sequences"
