"""Configuration is declared once (pydantic) and read through ``harness.declared.read_model``: a typo in a
sweep spec, ``reported.yaml``, ``--set protocol.*`` or ``--set method.*`` names its source and key with
the closest known keys, a wrong type names the key; run records travel typed (``RunRecord``) from the
runner to the leaderboard, and neither the protocol hashes nor the record bytes change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.engine.protocol import KNOBS, Protocol, resolve_protocol
from harness.errors import HarnessError
from harness.facts import MethodFacts
from harness.leaderboard.collect import load_runs
from harness.leaderboard.reported import ReportedError, load_reported
from harness.runs.inputs import check_method_settings
from harness.runs.schema import RunRecord
from harness.sweeps.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
RECORDS = sorted((REPO / "results").rglob("record.json"))


# -- sweep specs ---------------------------------------------------------------------------------
def _spec(tmp_path: Path, **change: object) -> Path:
    spec = {"name": "s", "task": "davis", "grid": {"method": ["pixels"], "protocol.topk": [5, 10]},
            "slurm": {"partition": "p"}, "resources": {"eval": {"gpus": 1}}}
    spec.update(change)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize(("change", "message"), [
    ({"descripton": "x"}, "unknown key 'descripton'. Did you mean: description"),
    ({"slurm": {"partiton": "p"}}, "unknown key 'slurm.partiton'. Did you mean: slurm.partition"),
    ({"resources": {"eval": {"gpu": 1}}}, "unknown key 'resources.eval.gpu'. Did you mean: resources.eval.gpus"),
    ({"cost": {"frame": 3}}, "unknown key 'cost.frame'. Did you mean: cost.frames"),
])
def test_sweep_spec_typo_names_the_file_and_key_with_a_suggestion(tmp_path: Path, change: dict, message: str) -> None:
    path = _spec(tmp_path, **change)
    with pytest.raises(HarnessError) as err:
        load_spec(str(path))
    assert str(err.value).startswith(f"{path}: {message}")  # the closest known key first


@pytest.mark.parametrize(("change", "key"), [
    ({"limit": "3"}, "limit"), ({"limit": 0}, "limit"), ({"feature_cache": "maybe"}, "feature_cache"),
    ({"resources": {"eval": {"gpus": 1.5}}}, "resources.eval.gpus"), ({"local": {"parallel": True}}, "local.parallel"),
    ({"cost": {"frames": "many"}}, "cost.frames"),
])
def test_sweep_spec_wrong_type_names_the_key(tmp_path: Path, change: dict, key: str) -> None:
    path = _spec(tmp_path, **change)
    with pytest.raises(HarnessError, match=rf"^{path}: key '{key}': "):
        load_spec(str(path))


def test_sweep_spec_keeps_what_the_file_wrote(tmp_path: Path) -> None:
    spec = load_spec(str(_spec(tmp_path, cost={"train_clips": 40, "train_clips_per_s": 0.5})))
    assert spec.slurm == {"partition": "p"} and spec.resources == {"eval": {"gpus": 1}}
    assert spec.cost == {"train_clips": 40, "train_clips_per_s": 0.5} and isinstance(spec.cost["train_clips"], int)
    assert spec.resource("eval") == {"gpus": 1, "cpus": 8, "timeout_min": 120}


# -- reported.yaml -------------------------------------------------------------------------------
def _reported(tmp_path: Path, **entry: object) -> Path:
    data = {"schema_version": 1, "unit": "percent", "protocol_groups": {"A": {"family": "crw", "description": "d"}},
            "entries": [{"id": "x", "method": "m", "task": "davis", "metrics": {"J&F-Mean": 60.0}, "source": "s",
                         "group": "A", "confirmed": True, **entry}]}
    path = tmp_path / "reported.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_reported_typo_names_the_file_entry_and_key(tmp_path: Path) -> None:
    path = _reported(tmp_path, backbon="R18")
    with pytest.raises(ReportedError) as err:
        load_reported(path)
    assert str(err.value) == f"{path}: entry 0 (x): unknown key 'backbon'. Did you mean: backbone?"


def test_reported_wrong_type_names_the_key(tmp_path: Path) -> None:
    path = _reported(tmp_path, weights="timm:resnet18")
    with pytest.raises(ReportedError, match=rf"^{path}: entry 0 \(x\): key 'weights': "):
        load_reported(path)
    path = _reported(tmp_path, metrics={"J&F-Mean": "high"})
    with pytest.raises(ReportedError, match=rf"^{path}: entry 0 \(x\): key 'metrics.J&F-Mean': .*'high'"):
        load_reported(path)


# -- --set protocol.* and --set method.* ----------------------------------------------------------
def test_protocol_typo_names_the_source_and_key_with_a_suggestion() -> None:
    with pytest.raises(HarnessError) as err:
        resolve_protocol("crw", "davis", {"radiuss": 8})
    assert str(err.value) == "protocol 'crw' settings: unknown key 'protocol.radiuss'. Did you mean: protocol.radius?"
    with pytest.raises(HarnessError, match="Did you mean: protocol.jhmdb_visibility"):  # task options are known keys
        resolve_protocol("crw", "jhmdb", {"jhmdb_visiblity": "gt"}, {"jhmdb_visibility": "pred"})


@pytest.mark.parametrize(("key", "value"), [("topk", "many"), ("topk", 2.5), ("context", True),
                                            ("temperature", float("nan")), ("window", "circle")])
def test_protocol_wrong_type_names_the_key(key: str, value: object) -> None:
    with pytest.raises(HarnessError, match=rf"^protocol 'crw' settings: key 'protocol.{key}': "):
        resolve_protocol("crw", "davis", {key: value})


def test_protocol_set_values_read_as_their_field_type() -> None:
    changed = resolve_protocol("dino", "davis", {"topk": "3", "radius": 8, "keep_first": "yes"})
    assert (changed.topk, changed.radius, changed.keep_first) == (3, 8.0, True)
    assert isinstance(changed.radius, float)  # a --set radius is a float, as it always was (it is hashed)
    assert resolve_protocol("dino", "davis").radius == 12 and isinstance(resolve_protocol("dino").radius, int)
    assert set(KNOBS) == set(Protocol.model_fields) - {"name", "task_options"}


def test_method_typo_names_the_flag_and_key_with_a_suggestion() -> None:
    facts = MethodFacts(stride=8, dim=3, settings=("seed", "layer"))
    with pytest.raises(HarnessError) as err:
        check_method_settings("m", facts, {"sed": 1}, {})
    assert str(err.value) == "--set method.sed: method 'm' has no setting 'sed'. Did you mean: method.seed? Its settings: seed, layer"


# -- protocol hashes and record bytes --------------------------------------------------------------
@pytest.mark.skipif(not RECORDS, reason="no committed run records")
@pytest.mark.parametrize("path", RECORDS, ids=[str(p.relative_to(REPO)) for p in RECORDS])
def test_committed_protocol_hashes_and_record_bytes_are_unchanged(path: Path) -> None:
    text = path.read_text()
    raw = json.loads(text)
    for block in (raw["protocol"], raw["config"]["protocol"]):
        settings = dict(block["settings"])
        options = settings.pop("task_options")
        protocol = Protocol(**settings, task_options=tuple(sorted(options.items())))
        assert protocol.hash == block["hash"]
        assert protocol.settings() == block["settings"]
        # ... and the family resolves to it with the record's non-default knobs as --set values
        family = resolve_protocol(settings["name"], raw["task"], task_defaults=options)
        changed = {k: settings[k] for k in KNOBS if family.settings()[k] != settings[k]}
        assert resolve_protocol(settings["name"], raw["task"], changed, options).hash == block["hash"]
    record = RunRecord.model_validate(raw)
    assert json.dumps(record.as_json(), indent=1, sort_keys=True) + "\n" == text


def test_a_record_keeps_numbers_as_written() -> None:
    import numpy as np

    raw = json.loads(RECORDS[0].read_text()) if RECORDS else pytest.skip("no committed run records")
    raw["timing"]["peak_rss_mib"] = 1900  # an int in a float field stays an int
    raw["timing"]["frames"] = np.int64(40)  # numpy scalars become what JSON would write for them
    raw["metrics"] = {k: np.float32(0.5) if v is not None else None for k, v in raw["metrics"].items()}
    dumped = RunRecord.model_validate(raw).as_json()
    assert dumped["timing"]["peak_rss_mib"] == 1900 and type(dumped["timing"]["peak_rss_mib"]) is int
    assert type(dumped["timing"]["frames"]) is int
    assert all(type(v) is float for v in dumped["metrics"].values() if v is not None)


# -- typed records from the runner to the leaderboard ------------------------------------------------
@pytest.mark.skipif(not RECORDS, reason="no committed run records")
def test_collect_returns_typed_records() -> None:
    runs, skipped = load_runs([REPO / "results" / "runs"])
    assert runs and not skipped
    for run in runs:
        assert isinstance(run.record, RunRecord)
        assert run.protocol_hash == run.record.protocol.hash == json.loads(run.path.read_text())["protocol"]["hash"]
        assert run.record.data is not None and run.record.data.sequences == json.loads(run.path.read_text())["data"]["sequences"]
        with pytest.raises(AttributeError):
            run.record.data.sequence_names  # noqa: B018 -- a renamed field fails loudly, not silently


def test_runner_hands_a_run_record_to_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.config import RunConfig
    from harness.runs import runner
    from tests.test_feature_cache import tiny_davis_root

    written: list[RunRecord] = []
    real = runner.write_record

    def spy(path: Path, record: RunRecord) -> None:
        written.append(record)
        real(path, record)

    monkeypatch.setattr(runner, "write_record", spy)
    root = tiny_davis_root(tmp_path / "data", frames=3)
    path = runner.run(RunConfig(method="pixels", task="davis", data_root=str(root), out_dir=str(tmp_path / "out"),
                                device="cpu"))
    (record,) = written
    assert isinstance(record, RunRecord) and record.data is not None and record.data.sequences == ["car-shadow"]
    assert path.read_text() == json.dumps(record.as_json(), indent=1, sort_keys=True) + "\n"
    assert RunRecord.model_validate(json.loads(path.read_text())).as_json() == json.loads(path.read_text())
