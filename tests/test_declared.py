"""The one configuration reader: errors name the source and key and suggest the close ones."""

from __future__ import annotations

import pytest

from harness.declared import Declared, did_you_mean, read_model
from harness.errors import HarnessError


class Optim(Declared):
    lr: float
    batch_size: int = 4


class Recipe(Declared):
    name: str
    optim: Optim
    extra: Optim | None = None


def test_did_you_mean_names_close_keys_with_prefix() -> None:
    assert did_you_mean("lrr", ["lr", "batch_size"], "optim.") == " Did you mean: optim.lr?"
    assert did_you_mean("zzz", ["lr"]) == ""


def test_unknown_nested_key_is_named_with_a_suggestion() -> None:
    with pytest.raises(HarnessError) as err:
        read_model(Recipe, {"name": "x", "optim": {"lr": 1, "bach_size": 2}}, "recipe.yaml")
    assert str(err.value) == "recipe.yaml: unknown key 'optim.bach_size'. Did you mean: optim.batch_size?"


def test_missing_and_mistyped_keys_are_named() -> None:
    with pytest.raises(HarnessError) as err:
        read_model(Recipe, {"optim": {"lr": "fast"}}, "r.yaml")
    text = str(err.value)
    assert "r.yaml: key 'name' is missing" in text
    assert "r.yaml: key 'optim.lr':" in text and "'fast'" in text


def test_lax_numbers_and_non_mappings() -> None:
    assert read_model(Recipe, {"name": "x", "optim": {"lr": "3e-4"}}, "r").optim.lr == pytest.approx(3e-4)
    with pytest.raises(HarnessError, match="expected a mapping"):
        read_model(Recipe, [1, 2], "r")


def test_optional_sections_get_suggestions_too() -> None:
    with pytest.raises(HarnessError) as err:
        read_model(Recipe, {"name": "x", "optim": {"lr": 1}, "extra": {"lrr": 2}}, "r")
    assert "unknown key 'extra.lrr'. Did you mean: extra.lr?" in str(err.value)
