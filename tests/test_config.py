"""``--set`` parsing and run-config validation."""

from __future__ import annotations

import pytest

from harness.config import RunConfig, parse_sets
from harness.engine.protocol import resolve_protocol
from harness.errors import HarnessError


def test_parse_sets_types_and_sections():
    sets = parse_sets(["protocol.topk=5", "protocol.temperature=0.1", "method.pretrained=false", "adapt.steps=3"])
    assert sets["protocol"] == {"topk": 5, "temperature": 0.1}
    assert sets["method"] == {"pretrained": False}
    assert sets["adapt"] == {"steps": 3}


@pytest.mark.parametrize("bad", ["topk=5", "protocol.topk", "nosuch.key=1", "=3"])
def test_parse_sets_rejects_malformed(bad):
    with pytest.raises(HarnessError):
        parse_sets([bad])


def test_overrides_change_the_protocol_hash():
    base = resolve_protocol("crw", "davis")
    changed = resolve_protocol("crw", "davis", {"topk": 5})
    assert changed.topk == 5 and changed.hash != base.hash
    assert resolve_protocol("crw", "davis", {"topk": "10"}).hash == base.hash


def test_unknown_protocol_setting_is_an_error():
    with pytest.raises(HarnessError, match=r"unknown key 'protocol.top_k'. Did you mean: protocol.topk\?"):
        resolve_protocol("crw", "davis", {"top_k": 5})


def test_run_config_validation(tmp_path):
    with pytest.raises(HarnessError, match="--limit"):
        RunConfig(method="pixels", task="davis", limit=0)
    with pytest.raises(HarnessError, match="no such file"):
        RunConfig(method="pixels", task="davis", checkpoint=str(tmp_path / "missing.pt"))
    with pytest.raises(HarnessError, match="--adapt"):
        RunConfig(method="crw", task="davis", overrides={"adapt": {"steps": 2}})
