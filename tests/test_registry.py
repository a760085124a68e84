"""The registry: registration, lookup with suggestions, families, entry points, listing."""

from __future__ import annotations

from importlib import metadata

import pytest

from harness import registry
from harness.errors import HarnessError


def test_builtin_methods_and_tasks_are_registered():
    methods = registry.list_methods()
    for name in ("crw", "pixels", "random-resnet18", "imagenet-effnet-lite0"):
        assert name in methods
    assert registry.list_tasks() == ["davis", "davis2016", "jhmdb", "vip"]


def test_unknown_method_suggests_closest_names():
    with pytest.raises(HarnessError) as err:
        registry.get_method("pixel")
    assert "pixels" in str(err.value)
    with pytest.raises(HarnessError) as err:
        registry.get_task("davis2071")
    assert "davis2017" not in str(err.value) and "davis" in str(err.value)


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_method("pixels", summary="again")(lambda config: None)


def test_family_prefix_resolves_any_model_name():
    entry = registry.get_method("timm:resnet18@crw")
    assert entry.name == "timm:resnet18@crw"
    assert callable(entry.factory)


def test_wildcard_listing():
    assert registry.list_methods("random-*") == ["random-resnet18"]
    assert "pixels" not in registry.list_methods("*", exclude="pix*")


def test_entry_point_methods_are_loaded(monkeypatch):
    def factory(config):
        """A third-party method."""

    class FakeEntryPoint:
        name = "thirdparty-method"

        def load(self):
            return factory

    real = metadata.entry_points

    def fake_entry_points(group=None, **kw):
        if group == registry.ENTRY_POINT_GROUP:
            return [FakeEntryPoint()]
        return real(group=group, **kw)

    fresh = registry._Registry("method", lambda: None)
    monkeypatch.setattr(registry, "_METHODS", fresh)
    monkeypatch.setattr(registry.metadata, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_FAMILY_EXAMPLES", {})
    # the builtin modules are already imported, so only the entry point can add to the fresh registry
    fresh.loaded = True
    registry._load_entry_points()
    entry = registry.get_method("thirdparty-method")
    assert entry.factory is factory
    assert entry.summary == "A third-party method."
