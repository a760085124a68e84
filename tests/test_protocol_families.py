"""Protocol families are registered, by the harness and by method packages, and resolved per task."""

from __future__ import annotations

import pytest

from harness.engine import protocol as protocol_module
from harness.engine.protocol import Protocol, protocol_families, register_protocol, resolve_protocol
from harness.errors import HarnessError


def test_builtin_families_keep_their_published_per_task_settings() -> None:
    assert {"crw", "dino"} <= set(protocol_families())
    assert resolve_protocol("crw", "davis").context == 20
    assert resolve_protocol("crw", "jhmdb").context == 7  # docs/protocol.md §4.6
    assert resolve_protocol("crw", "vip").context == 4
    assert resolve_protocol("crw", "davis").hash == "d034f1de23"  # the committed records' hash
    assert resolve_protocol("dino", "davis").hash == "b955d35d82"


def test_a_registered_family_resolves_with_its_own_per_task_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol_module, "_FAMILIES", dict(protocol_module._FAMILIES))
    register_protocol(Protocol(name="paper-x", topk=7, temperature=0.07), per_task={"jhmdb": {"radius": 5}},
                      summary="paper X's test settings")
    assert "paper-x" in protocol_families()
    davis, jhmdb = resolve_protocol("paper-x", "davis"), resolve_protocol("paper-x", "jhmdb")
    assert (davis.topk, davis.temperature, davis.radius) == (7, 0.07, 12.0)
    assert jhmdb.radius == 5.0 and jhmdb.hash != davis.hash
    assert resolve_protocol("paper-x", "davis", {"topk": 3}).topk == 3
    with pytest.raises(ValueError, match="registered twice"):
        register_protocol(Protocol(name="paper-x"))
    with pytest.raises(HarnessError, match="unknown protocol 'paper-y'"):
        resolve_protocol("paper-y", "davis")
