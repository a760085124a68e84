"""``harness sweep`` with a ``trainer`` grid axis: several methods trained side by side on the same data, each
evaluated with its own method; per-method training cost; the ``crw-vs-vfs`` preset at paper and demo scale."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.cli import main
from harness.errors import HarnessError
from harness.sweeps import plan
from harness.sweeps.cost import estimate

REPO = Path(__file__).resolve().parents[1]
VIDEOS = REPO.parent / "shared" / "data" / "videos"


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _sets(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--set"]


def test_paper_scale_trains_crw_and_vfs_on_the_same_data_and_evaluates_each_with_its_method(tmp_path, capsys):
    spec, _, cells = plan("crw-vs-vfs", out_dir=tmp_path)
    assert [(c.id, c.kind) for c in cells] == [("crw-crw-paper", "train"), ("vfs-vfs-paper", "train")]
    crw, vfs = cells
    kinetics = str(Path("~/kinetics400/train_256").expanduser())
    for cell, method, recipe, eval_file, state_file in ((crw, "crw", "crw-paper", "crw-eval.pt", "checkpoint.pt"),
                                                        (vfs, "vfs", "vfs-paper", "vfs-eval.pt", "train-state.pt")):
        train_dir = tmp_path / "training" / cell.id
        assert cell.train_args[:5] == ["train", "--method", method, "--recipe", recipe]
        assert _arg(cell.train_args, "--data") == kinetics and _arg(cell.train_args, "--out-dir") == str(train_dir)
        assert "--max-steps" not in cell.train_args  # each recipe's own schedule
        assert cell.run_args[:7] == ["run", "--method", method, "--task", "davis", "--protocol", "crw"]
        assert _arg(cell.run_args, "--checkpoint") == str(train_dir / eval_file) == cell.checkpoint
        assert cell.train_state == train_dir / state_file
        assert cell.params["method"] == method and cell.params["trainer"] == f"{method}-{recipe}"
    # VFS sees crw-paper's 125 samples per video (25 epochs x 5 clips): 125 single passes; its set is its own
    assert _sets(crw.train_args) == [] and _sets(vfs.train_args) == ["data.repeat=1", "optim.epochs=125"]
    # by hand: 30 M clips at 132 (crw) and 78 (vfs) clips/s, plus 1,999 frames x (20 + 30) ms each (features
    # once per checkpoint: two checkpoints, two feature groups)
    seconds = [c.seconds for c in estimate(spec, cells)]
    assert seconds == pytest.approx([30e6 / 132 + 1999 * 0.05, 30e6 / 78 + 1999 * 0.05])
    assert sum(seconds) / 3600 == pytest.approx(170.0, abs=0.05)
    assert main(["sweep", "crw-vs-vfs", "--out-dir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "crw-crw-paper  missing  train  est.    63.2 h  train crw 30,000,000 clips at 132 clips/s" in out
    assert "vfs-vfs-paper  missing  train  est.   106.9 h  train vfs 30,000,000 clips at 78 clips/s" in out
    assert "to run: 2 of 2 cells, est. 170 GPU-hours" in out
    assert "QUOTED" in out and "ASSUMED" in out  # the figures' source is printed with them


def test_paper_scale_asks_slurm_for_one_gpu_per_training_cell():
    spec, _, _ = plan("crw-vs-vfs", out_dir="/tmp/never-written")
    assert spec.resource("train") == {"gpus": 1, "cpus": 16, "timeout_min": 10080}
    assert spec.resource("eval")["gpus"] == 1 and spec.slurm["array_parallelism"] == 2


def test_demo_scale_shrinks_each_trainer_and_states_its_own_cost(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_VIDEOS", str(VIDEOS.resolve()))  # the demo's training videos, named by the user
    spec, _, cells = plan("crw-vs-vfs", scale="demo", out_dir=tmp_path)
    assert [c.id for c in cells] == ["crw-crw-cpu-demo", "vfs-vfs-cpu-demo"]
    crw, vfs = cells
    for cell in cells:
        assert _arg(cell.train_args, "--data") == str(VIDEOS.resolve())
        assert _arg(cell.train_args, "--max-steps") == "2" and _arg(cell.train_args, "--device") == "cpu"
        assert _arg(cell.run_args, "--limit") == "1"
    assert crw.train_args[:5] == ["train", "--method", "crw", "--recipe", "crw-cpu-demo"]
    assert _sets(crw.train_args) == ["augment.frame_size=64", "augment.patch_size=16", "augment.patch_stride=8"]
    assert vfs.train_args[:5] == ["train", "--method", "vfs", "--recipe", "vfs-cpu-demo"]
    assert _sets(vfs.train_args) == ["augment.size=64"]
    assert Path(crw.checkpoint).name == "crw-eval.pt" and Path(vfs.checkpoint).name == "vfs-eval.pt"
    # by hand: 2 steps x batch 4 = 8 CRW clips at 0.55/s, 2 x 8 = 16 VFS samples at 1.15/s; 40 frames x 1,793 ms each
    seconds = [c.seconds for c in estimate(spec, cells)]
    assert seconds == pytest.approx([8 / 0.55 + 40 * 1.793, 16 / 1.15 + 40 * 1.793])


# -- refused specs ---------------------------------------------------------------------------------
def _spec(path: Path, trainers: list, **change) -> Path:
    spec = {"name": "t", "task": "davis", "device": "cpu", "train": {"data": str(path.parent)},
            "grid": {"trainer": trainers}, **change}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


BOTH = [{"method": "crw", "recipe": "crw-cpu-demo"}, {"method": "vfs", "recipe": "vfs-cpu-demo"}]


@pytest.mark.parametrize("trainers, change, message", [
    ([BOTH[0], {"method": "vfz", "recipe": "vfs-cpu-demo"}], {},
     r"grid axis 'trainer' value 1 \(vfz-vfs-cpu-demo\): key 'grid.trainer.1.method': unknown trainer 'vfz'. Did you mean: vfs"),
    ([BOTH[0], {"method": "pixels", "recipe": "x"}], {}, r"key 'grid.trainer.1.method': unknown trainer 'pixels'"),
    ([BOTH[0], {"method": "vfs", "recipe": "vfs-papr"}], {},
     r"grid axis 'trainer' value 1 \(vfs-vfs-papr\): training recipe 'vfs-papr'.*unknown recipe 'vfs-papr'"),
    ([BOTH[0], {"method": "vfs", "recipee": "vfs-paper"}], {}, r"unknown key 'grid.trainer.1.recipee'. Did you mean: grid.trainer.1.recipe"),
    ([BOTH[0], {"method": "vfs"}], {}, r"key 'grid.trainer.1.recipe' is missing"),
    ([BOTH[0], "vfs"], {}, r"grid axis 'trainer' value 1 must be a mapping"),
    (BOTH, {"train": None}, r"grid axis 'trainer' names what each cell trains, but the spec has no `train`"),
    (BOTH, {"train": {"data": ".", "method": "crw"}}, r"key 'train.method' is given per cell by grid axis 'trainer'"),
    (BOTH, {"cost": {"train_clips_per_s": {"crw": 1}, "train_clips": 8}},
     r"key 'cost.train_clips_per_s' has no figure for trained method 'vfs' \(it gives: crw\)"),
    (BOTH, {"cost": {"train_clips": {"crw": 8, "vfs": 16, "dino": 3}}}, r"key 'cost.train_clips.dino' names no method"),
    ([BOTH[0]], {"cost": {"train_clips": {"vfs": 16}}}, r"no figure for trained method 'crw'"),
    (BOTH, {"grid": {"trainer": BOTH, "recipe.data.clip_len": [4, 8]}},
     r"value 1 \(vfs-vfs-cpu-demo\): training recipe 'vfs-cpu-demo' with \{'data.clip_len': 4\}: --set data.clip_len: unknown"),
    ([{**BOTH[0], "set": {"augment.sise": 64}}, BOTH[1]], {},
     r"value 0 \(crw-crw-cpu-demo\).*--set augment.sise: unknown recipe key"),
    (BOTH, {"grid": {"trainer": BOTH, "method": ["crw"]}}, r"drop grid axis `method`"),
])
def test_bad_trainer_specs_are_refused_naming_the_key(tmp_path, trainers, change, message):
    path = _spec(tmp_path / "bad.yaml", trainers, **change)
    with pytest.raises(HarnessError, match=message):
        plan(str(path), out_dir=tmp_path / "o")


def test_without_a_trainer_axis_train_method_and_recipe_are_required(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "task": "davis", "train": {"recipe": "crw-cpu-demo", "data": "."},
                                    "grid": {"recipe.data.clip_len": [4, 8]}}))
    with pytest.raises(HarnessError, match=r"key 'train.method' is missing"):
        plan(str(path), out_dir=tmp_path / "o")


def test_each_trainer_gets_its_own_set_and_every_recipe_axis(tmp_path):
    """A trainer value's `set` is that trainer's only; `train.set` and `recipe.*` axes go to every trainer, over it."""
    trainers = [{**BOTH[0], "set": {"optim.lr": 0.001, "data.clip_len": 6}}, BOTH[1]]
    path = _spec(tmp_path / "s.yaml", trainers, train={"data": ".", "max_steps": 3, "set": {"optim.lr": 0.01}},
                 grid={"trainer": trainers, "recipe.seed": [1, 2]},
                 cost={"train_clips_per_s": {"crw": 2, "vfs": 8}, "train_clips": {"crw": 12, "vfs": 24}})
    spec, _, cells = plan(str(path), out_dir=tmp_path / "o")
    assert [c.id for c in cells] == ["crw-crw-cpu-demo__seed-1", "crw-crw-cpu-demo__seed-2",
                                     "vfs-vfs-cpu-demo__seed-1", "vfs-vfs-cpu-demo__seed-2"]
    assert _sets(cells[0].train_args) == ["optim.lr=0.001", "data.clip_len=6", "seed=1"]
    assert _sets(cells[3].train_args) == ["optim.lr=0.01", "seed=2"]
    assert all(_arg(c.train_args, "--max-steps") == "3" for c in cells)
    # by hand, training only (no eval figures): crw 12 clips of 6 frames at 2 x 4 / 6 clips/s; vfs 24 at 8
    costs = estimate(spec, cells)
    assert [c.seconds for c in costs] == [None] * 4  # no eval ms/frame: unknown, not guessed
    spec.cost.update(propagation_ms_per_frame=0, frames=1)
    assert [c.seconds for c in estimate(spec, cells)] == pytest.approx([12 / (2 * 4 / 6)] * 2 + [24 / 8] * 2)


# -- the demo, end to end -----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not VIDEOS.is_dir(), reason="needs the shared real videos (../shared/data/videos)")
def test_demo_scale_trains_both_and_evaluates_each_checkpoint_with_its_method(tmp_path, capsys, monkeypatch):
    """3-6 minutes on 2 shared CPU cores (too long for the default run): two 2-step trainings, two 40-frame evaluations."""
    monkeypatch.setenv("HARNESS_VIDEOS", str(VIDEOS.resolve()))
    out = tmp_path / "sweep"
    assert main(["sweep", "crw-vs-vfs", "--scale", "demo", "--executor", "debug", "--out-dir", str(out)]) == 0
    table = pd.read_csv(out / "report.csv").set_index("cell")
    assert list(table.index) == ["crw-crw-cpu-demo", "vfs-vfs-cpu-demo"] and set(table["status"]) == {"done"}
    for cell, method, eval_file in (("crw-crw-cpu-demo", "crw", "crw-eval.pt"), ("vfs-vfs-cpu-demo", "vfs", "vfs-eval.pt")):
        record = json.loads((out / cell / "record.json").read_text())
        assert record["method"] == method and table.loc[cell, "method"] == method
        assert record["checkpoint"]["path"].endswith(f"training/{cell}/{eval_file}")
        assert table.loc[cell, "J&F-Mean"] == record["metrics"]["J&F-Mean"]
        steps = [json.loads(line)["step"] for line in (out / "training" / cell / "metrics.jsonl").read_text().splitlines()]
        assert steps == [1, 2]


def test_demo_scale_without_its_videos_variable_names_it(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_VIDEOS", raising=False)
    with pytest.raises(HarnessError, match="needs the environment variable HARNESS_VIDEOS"):
        plan("crw-vs-vfs", scale="demo", out_dir=tmp_path)
