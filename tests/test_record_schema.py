"""The run-record schema: committed records validate, malformed ones fail naming the key, and the
committed JSON Schema file is the one generated from the declaration."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from harness.cli import main as cli_main
from harness.runs.schema import RecordInvalid, json_schema, json_schema_text, validate_record

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted((REPO / "results" / "runs").rglob("record.json"))
SCHEMA_FILE = REPO / "harness" / "runs" / "record.schema.json"


def _record() -> dict[str, Any]:
    return json.loads(COMMITTED[0].read_text())


def test_there_are_committed_records() -> None:
    assert len(COMMITTED) >= 5, COMMITTED


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO / "results" / "runs")))
def test_every_committed_record_validates(path: Path) -> None:
    record = json.loads(path.read_text())
    validate_record(record)  # the declaration (pydantic)
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(record)  # the export


def test_committed_schema_file_is_the_generated_one() -> None:
    assert SCHEMA_FILE.read_text() == json_schema_text(), "regenerate: harness schema > harness/runs/record.schema.json"
    jsonschema.Draft202012Validator.check_schema(json_schema())


def _delete(path: str) -> Any:
    def edit(record: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            record = record[key]
        del record[last]

    return edit


def _set(path: str, value: Any) -> Any:
    def edit(record: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            record = record[key]
        record[last] = value

    return edit


MALFORMED = [
    (_delete("metrics"), "missing key 'metrics'", True),
    (_delete("protocol.hash"), "missing key 'protocol.hash'", True),
    (_set("schema_version", 7), "schema_version", True),
    (_set("method", ""), "method", True),
    (_set("metrics.J&F-Mean", 67.5), "metrics.J&F-Mean: 67.5 is not a fraction", True),
    (_set("metrics.J-Mean", "high"), "metrics.J-Mean", True),
    (_set("timing.frames", -3), "timing.frames", True),
    (_set("timing.read_wait_ms_per_frame", -1.0), "timing.read_wait_ms_per_frame", True),
    (_set("timing.feature_cache", {"hits": 1, "hit": 2}), "timing.feature_cache", True),
    (_set("timing.stages", {"read": 1.0, "decode": 2.0}), "unknown stage(s) ['decode']", False),
    (_set("env.load_avg", "busy"), "env.load_avg", True),
    (_set("data.sequences", "blackswan"), "data.sequences", True),
]


@pytest.mark.parametrize(("edit", "named", "in_json_schema"), MALFORMED, ids=[m[1] for m in MALFORMED])
def test_malformed_record_fails_naming_the_key(edit: Any, named: str, in_json_schema: bool) -> None:
    record = copy.deepcopy(_record())
    edit(record)
    with pytest.raises(RecordInvalid) as caught:
        validate_record(record)
    assert named in str(caught.value)
    if in_json_schema:  # the exported schema refuses it too (stage names are checked by the harness only)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(record, json.loads(SCHEMA_FILE.read_text()))


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(RecordInvalid, match="top level is list"):
        validate_record([])


def test_schema_command_prints_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()
    good, bad = tmp_path / "good" / "record.json", tmp_path / "bad" / "record.json"
    for path in (good, bad):
        path.parent.mkdir()
    good.write_text(json.dumps(_record()))
    broken = _record()
    del broken["protocol"]["name"]
    bad.write_text(json.dumps(broken))
    assert cli_main(["schema", "--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}" in err and "protocol.name" in err and "1 of 2 record(s)" in err
    assert cli_main(["schema", "--check", str(tmp_path / "good")]) == 0
