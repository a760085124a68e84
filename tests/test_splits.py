"""Split lists have one reader (harness.data.cards, driven by the dataset card): the task and
`harness data check` read the same names from the same file, `#` lines being comments."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.data.cards import find_card, split_names
from harness.data.check import run_check
from harness.errors import DataError
from harness.registry import get_task
from tests.test_runner import small_davis_root


def test_task_and_check_read_the_same_names_and_skip_comments(tmp_path: Path) -> None:
    root = small_davis_root(tmp_path / "davis", frames=2)
    (root / "ImageSets" / "2017" / "val.txt").write_text(
        "# DAVIS-2017 val, cut to two sequences\n\ncar-shadow\n  motocross-jump  \n#car-roundabout\ncar-shadow\n")
    task = get_task("davis").factory(root, {})
    assert task.sequences() == ["car-shadow", "motocross-jump"]
    report = run_check("davis", root)
    assert report.sequences == ["car-shadow", "motocross-jump"], report.problems


def test_davis2016_frame_pair_list_is_read_from_the_card_fallback(tmp_path: Path) -> None:
    lists = tmp_path / "ImageSets" / "480p"
    lists.mkdir(parents=True)
    (lists / "val.txt").write_text("# frame pairs\n/JPEGImages/480p/dog/00000.jpg /Annotations/480p/dog/00000.png\n"
                                   "/JPEGImages/480p/dog/00001.jpg /Annotations/480p/dog/00001.png\n"
                                   "/JPEGImages/480p/camel/00000.jpg /Annotations/480p/camel/00000.png\n")
    names, path = split_names(tmp_path, find_card("davis2016").check.splits["val"])
    assert names == ["dog", "camel"] and path == lists / "val.txt"
    (lists / "val.txt").write_text("dog.jpg\n")
    with pytest.raises(DataError, match="cannot read a sequence name from line 'dog.jpg'"):
        split_names(tmp_path, find_card("davis2016").check.splits["val"])


def test_missing_or_empty_list_names_where_it_looked(tmp_path: Path) -> None:
    split = find_card("davis2017").check.splits["val"]
    with pytest.raises(DataError, match=r"no list of split 'val' \(looked for .*ImageSets/2017/val.txt\)"):
        split_names(tmp_path, split)
    (tmp_path / "ImageSets" / "2017").mkdir(parents=True)
    (tmp_path / "ImageSets" / "2017" / "val.txt").write_text("# nothing yet\n")
    with pytest.raises(DataError, match="names no sequence"):
        split_names(tmp_path, split)
