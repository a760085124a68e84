"""Protocol presets hold the published settings (docs/protocol.md §4.6–4.7), and every knob is hashed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harness.engine.protocol import Protocol, protocol_families, resolve_protocol
from harness.errors import HarnessError


def test_families():
    # the harness's own two, and the one the vfs method package registers
    assert protocol_families() == ["crw", "dino", "vfs"]


def test_crw_preset_is_the_videowalk_readme_command():
    p = resolve_protocol("crw", "davis")
    assert (p.context, p.keep_first, p.topk, p.temperature, p.radius) == (20, True, 10, 0.05, 12.0)
    assert (p.window, p.restrict_first, p.pad_with_first) == ("disk", False, True)


def test_dino_preset_is_eval_video_segmentation():
    p = resolve_protocol("dino", "davis")
    assert (p.context, p.keep_first, p.topk, p.temperature, p.radius) == (7, True, 5, 0.1, 12)
    assert (p.window, p.restrict_first, p.pad_with_first) == ("square", True, False)


@pytest.mark.parametrize("task,context", [("davis", 20), ("davis2016", 20), ("jhmdb", 7), ("vip", 4), (None, 20)])
def test_crw_context_per_task(task, context):
    assert resolve_protocol("crw", task).context == context


def test_dino_has_no_task_specific_settings():
    assert resolve_protocol("dino", "jhmdb") == resolve_protocol("dino", "davis")


def test_resolved_settings_are_hashed():
    davis, jhmdb = resolve_protocol("crw", "davis"), resolve_protocol("crw", "jhmdb")
    assert davis.hash != jhmdb.hash
    assert davis.hash == resolve_protocol("crw", "davis").hash
    assert len(davis.hash) == 10


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("topk", "5", 5),
        ("context", "7", 7),
        ("temperature", "0.07", 0.07),
        ("radius", "8", 8.0),
        ("window", "square", "square"),
        ("restrict_first", "true", True),
        ("pad_with_first", "no", False),
        ("keep_first", "0", False),
    ],
)
def test_every_knob_is_overridable_and_changes_the_hash(key, value, expected):
    base = resolve_protocol("crw", "davis")
    changed = resolve_protocol("crw", "davis", overrides={key: value})
    assert getattr(changed, key) == expected
    assert changed.hash != base.hash
    assert changed.settings()[key] == expected


def test_override_back_to_the_default_keeps_the_hash():
    assert resolve_protocol("crw", "davis", overrides={"topk": "10"}).hash == resolve_protocol("crw", "davis").hash


def test_name_is_not_hashed_equal_knobs_compare_equal():
    """dino with crw's knobs is the crw protocol: its hash must say so."""
    crw = resolve_protocol("crw", "davis")
    knobs = {k: v for k, v in crw.settings().items() if k not in ("name", "task_options")}
    assert resolve_protocol("dino", "davis", overrides=knobs).hash == crw.hash


def test_task_options_join_the_hash():
    plain = resolve_protocol("crw", "jhmdb", task_defaults={"visibility": "predicted"})
    assert plain.option("visibility") == "predicted"
    changed = resolve_protocol("crw", "jhmdb", overrides={"visibility": "gt"}, task_defaults={"visibility": "predicted"})
    assert changed.option("visibility") == "gt"
    assert changed.hash != plain.hash
    assert changed.settings()["task_options"] == {"visibility": "gt"}


def test_record_has_name_settings_and_hash():
    rec = resolve_protocol("dino", "davis").record()
    assert set(rec) == {"name", "settings", "hash"}
    assert rec["name"] == "dino" and rec["settings"]["topk"] == 5


def test_protocol_objects_resolve_again():
    p = resolve_protocol("crw", "davis", overrides={"topk": 3})
    assert resolve_protocol(p) == p


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"topk": 0}, "topk"),
        ({"context": -1}, "context"),
        ({"temperature": 0}, "temperature"),
        ({"radius": 0}, "radius"),
        ({"window": "circle"}, "window"),
        ({"keep_first": False, "context": 0}, "context"),
        ({"topk": "many"}, "topk"),
        ({"restrict_first": "perhaps"}, "restrict_first"),
        ({"nonsense": 1}, "unknown key 'protocol.nonsense'"),
    ],
)
def test_bad_settings_are_user_errors(overrides, match):
    with pytest.raises(HarnessError, match=match):
        resolve_protocol("crw", "davis", overrides=overrides)


def test_unknown_family():
    with pytest.raises(HarnessError, match="unknown protocol 'walk'"):
        resolve_protocol("walk")


def test_protocol_is_frozen():
    p = Protocol(name="x")
    with pytest.raises(ValidationError, match="frozen"):
        p.topk = 3  # type: ignore[misc]
