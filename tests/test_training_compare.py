"""`harness curves`: runs compared by clips seen (step × their own batch size), refused when not comparable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError
from harness.training.compare import compare


def fake_run(folder: Path, method: str, batch: int, scores: dict[int, float], step_s: float = 2.0,
             protocol_hash: str = "d034f1de23") -> Path:
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump({"name": f"{method}-demo", "optim": {"batch_size": batch}}))
    lines = []
    for step in range(1, max(scores) + 1):
        lines.append({"step": step, "loss": 1.0, "time": {"step": step_s}})
        if step in scores:
            lines.append({"kind": "eval", "step": step, "method": method, "task": "davis2016", "metric": "J&F-Mean",
                          "score": scores[step], "smoke": False, "protocol_hash": protocol_hash,
                          "data": {"sequences": ["a", "b"], "label": "DAVIS-2016 val, 2 of 20 sequences"}})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def test_clips_seen_and_wall_time_come_from_each_run(tmp_path: Path) -> None:
    a = fake_run(tmp_path / "a", "crw", batch=4, scores={5: 0.30, 10: 0.40})
    b = fake_run(tmp_path / "b", "vfs", batch=8, scores={5: 0.35}, step_s=3.0)
    paths = compare([a, b], tmp_path / "out")
    summary = json.loads(paths["json"].read_text())
    assert [[p["clips"] for p in r["points"]] for r in summary["runs"]] == [[20, 40], [40]]
    assert [r["train_wall_s"] for r in summary["runs"]] == [20.0, 15.0]
    assert summary["runs"][0]["points"][0]["train_wall_s"] == 10.0
    table = paths["md"].read_text()
    assert "| crw | crw-demo | 40 | 0.3 | 20: 30.0, 40: 40.0 | 40.0 |" in table
    assert "| vfs | vfs-demo | 40 | 0.2 | 40: 35.0 | 35.0 |" in table
    assert paths["svg"].read_text().startswith("<?xml")


def test_runs_under_another_protocol_are_refused(tmp_path: Path) -> None:
    a = fake_run(tmp_path / "a", "crw", batch=4, scores={5: 0.30})
    b = fake_run(tmp_path / "b", "vfs", batch=4, scores={5: 0.35}, protocol_hash="ffffffffff")
    with pytest.raises(HarnessError, match="another protocol_hash"):
        compare([a, b], tmp_path / "out")


def test_cli_names_a_folder_that_is_no_training_run(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "harness", "curves", str(tmp_path), "--out-dir", str(tmp_path / "o")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "not a `harness train` output folder" in done.stderr


def test_reference_records_are_level_lines_on_the_same_data_only(tmp_path: Path) -> None:
    a = fake_run(tmp_path / "a", "crw", batch=4, scores={5: 0.30})
    floor = {"task": "davis2016", "method": "random-resnet18", "protocol": {"hash": "d034f1de23"}, "checkpoint": None,
             "method_info": {"pretraining": "none (random init, seed 0)"},
             "data": {"sequences": ["a", "b"]}, "metrics": {"J&F-Mean": 0.41}}
    (tmp_path / "floor.json").write_text(json.dumps(floor))
    paths = compare([a], tmp_path / "out", references=[tmp_path / "floor.json"])
    assert "| random-resnet18 · random init (reference) | – | 0 | – | – | 41.0 |" in paths["md"].read_text()
    assert "random-resnet18 · random init: 41.0" in paths["svg"].read_text()
    floor["data"]["sequences"] = ["a"]
    (tmp_path / "other.json").write_text(json.dumps(floor))
    with pytest.raises(HarnessError, match="another sequences"):
        compare([a], tmp_path / "out", references=[tmp_path / "other.json"])
