"""The run record's declared schema: what the runner writes and the leaderboard reads.

One typed declaration (pydantic v2) serves three readers: the runner validates a record before
writing it, the leaderboard validates every record before publishing a number from it, and
``harness schema`` exports the same declaration as JSON Schema so tools outside the harness can
check records without importing it. ``SCHEMA_VERSION`` is defined here and nowhere else.

Version 2 (2026-11-27 issues) adds: ``run_digest``, ``data.fingerprint`` and ``data.dataset``
(the dataset and split identified from the data itself), ``env.package_version``/``cpu_model``/
``load_avg``, per-stage ``timing`` (``read``, ``features``, ``propagation``, ``labels``, ``write``,
``score`` in ms/frame, ``wall_s``, ``model_load_s``) and ``smoke``. Version 1 records stay valid:
every version-2 key is optional, and version 1's timing keys stay readable.

The runner builds a :class:`RunRecord` and writes :meth:`RunRecord.as_json`; the leaderboard reads
its typed fields (``record.data.sequences``, ``record.protocol.hash``). Numbers, counts and flags are
checked against their declared type but kept *as written* (an ``int`` in a float field stays an
``int``, numpy scalars become the Python numbers JSON would write), so a record read and dumped again
gives the same JSON, and a record built by the runner the same JSON its dict did.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    field_validator,
)

SCHEMA_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)

#: the per-frame stages of a run, in the order they happen (ms/frame in ``timing.stages``)
STAGES = ("read", "features", "propagation", "labels", "write", "score")


def _as_written(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Check ``value`` against the declared type (and bounds), but keep it as written: pydantic would turn
    an ``int`` into a ``float`` (``3`` → ``3.0``) and change the record's JSON. A numpy scalar becomes the
    Python number :func:`harness.io.atomic_write_json` would write for it."""
    handler(value)
    return value.item() if type(value).__module__ == "numpy" and hasattr(value, "item") else value


_Kept = WrapValidator(_as_written)
#: a JSON number (declared float), kept as written
Number = Annotated[float, _Kept]
#: a JSON integer, kept as written
Whole = Annotated[int, _Kept]
#: true/false, kept as written
Flag = Annotated[bool, _Kept]


class _Block(BaseModel):
    """Blocks keep keys they do not declare: a reader of version N ignores what N+1 adds."""

    model_config = ConfigDict(extra="allow")


class ProtocolBlock(_Block):
    name: str
    hash: str = Field(min_length=1)
    settings: dict[str, Any]


class CheckpointBlock(_Block):
    path: str
    sha256: str | None = None


class EnvBlock(_Block):
    python: str
    torch: str | None = None
    timm: str | None = None
    numpy: str | None = None
    platform: str | None = None
    device: str
    device_name: str | None = None
    cuda: str | None = None
    threads: Whole | None = None
    git_commit: str | None = None
    git_dirty: Flag | None = None
    # version 2
    package_version: str | None = None
    cpu_model: str | None = None
    load_avg: list[Number] | None = None


class DatasetIdentity(_Block):
    """What the data *is*, read from sequence names and object counts against the official lists."""

    name: str
    split: str | None = None
    sequences: Whole
    of_split: Whole | None = None
    label: str


class DataBlock(_Block):
    root: str
    sample: Flag = False
    sequences: list[str]
    limit: Whole | None = None
    # version 2
    fingerprint: str | None = None
    dataset: DatasetIdentity | None = None


class TimingBlock(_Block):
    frames: Annotated[int, Field(ge=0), _Kept] | None = None  # absent in hand-made or partial records
    peak_rss_mib: Number | None = None
    peak_gpu_mib: Number | None = None
    # version 1 (kept readable)
    features_ms_per_frame: Number | None = None
    propagation_ms_per_frame: Number | None = None
    adapt_s_per_video: Number | None = None
    scoring_s: Number | None = None
    total_s: Number | None = None
    # version 2
    stages: dict[str, Number] | None = None
    wall_s: Number | None = None
    model_load_s: Number | None = None
    #: what the compute still waited for the reading thread (reading runs one sequence ahead)
    read_wait_ms_per_frame: Annotated[float, Field(ge=0), _Kept] | None = None
    #: with ``--feature-cache``: sequences whose features were read from the cache (hits) or computed
    feature_cache: dict[Literal["hits", "misses"], Whole] | None = None

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, value: dict[str, Number] | None) -> dict[str, Number] | None:
        unknown = sorted(set(value or {}) - set(STAGES))
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
        return value


def _fraction(value: float) -> float:
    """Metrics are fractions (docs/conventions.md §5); decays may be negative, beyond 1 is a percentage by mistake."""
    if not math.isfinite(value):
        raise ValueError("a metric must be a finite number or null, not NaN/Inf")
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"{value} is not a fraction in [-1, 1] (percent?)")
    return value


#: a metric value: a finite fraction; JSON Schema readers get the same bounds
Fraction = Annotated[float, AfterValidator(_fraction), _Kept,
                     WithJsonSchema({"type": "number", "minimum": -1, "maximum": 1})]


class RunRecord(_Block):
    """One ``record.json``: one method on one task under one protocol, with what produced it."""

    schema_version: Literal[1, 2]
    method: str = Field(min_length=1)
    task: str = Field(min_length=1)
    protocol: ProtocolBlock
    metrics: dict[str, Fraction | None] = Field(min_length=1)
    method_info: dict[str, Any] | None = None
    checkpoint: CheckpointBlock | None = None
    config: dict[str, Any] | None = None
    env: EnvBlock | None = None
    seed: Whole | None = None
    data: DataBlock | None = None
    started: str | None = None
    finished: str | None = None
    timing: TimingBlock | None = None
    per_sequence: dict[str, dict[str, Any]] | None = None
    per_object: dict[str, dict[str, Any]] | None = None
    # version 2
    run_digest: str | None = None
    smoke: Flag | None = None
    visualizations: list[str] | None = None

    def as_json(self) -> dict[str, Any]:
        """The record as ``record.json`` holds it: the keys that were given, with their values as given."""
        return self.model_dump(exclude_unset=True, warnings=False)  # values kept as written (see _as_written)


class RecordInvalid(ValueError):
    """A record does not match the schema; the message names the offending key(s)."""


def validate_record(record: Any) -> RunRecord:
    """Check a record (a dict) against the schema and return it typed; raises :class:`RecordInvalid`
    naming each bad key."""
    if not isinstance(record, dict):
        raise RecordInvalid(f"top level is {type(record).__name__}, not an object")
    try:
        return RunRecord.model_validate(record)
    except ValidationError as err:
        problems = []
        for item in err.errors():
            where = ".".join(str(part) for part in item["loc"]) or "(record)"
            if item["type"] == "missing":
                problems.append(f"missing key {where!r}")
            else:
                problems.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
        raise RecordInvalid("; ".join(problems)) from None


def json_schema() -> dict[str, Any]:
    """The record schema as JSON Schema (draft 2020-12), generated from the declaration above."""
    schema = RunRecord.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"crwbench run record (schema_version {SCHEMA_VERSION})"
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
